// Deliberate undefined behaviour, run by test_rapidjson in sanitizer builds to
// prove the suppression list is narrow and UBSan still halts on findings.
#include <climits>
#include <cstdlib>

int main(int argc, char**) {
  volatile int x = INT_MAX;
  int y = x + argc;  // signed overflow: argc >= 1
  return y == 0 ? 0 : 0;
}
