// A throw-away certificate authority for tests and the control-plane
// emulator: an EC P-256 CA and one server certificate for 127.0.0.1, ::1 and
// localhost signed by it, all PEM. Clients verify with the CA file
// (curl --cacert ca.pem). Never use these for anything but loopback tests.
#pragma once

#include <chrono>
#include <string>

#include "common/result.h"

namespace plexd::tlstest {

struct TestCa {
  std::string caCertPem;
  std::string serverCertPem;
  std::string serverKeyPem;  // PKCS#8 PEM, unencrypted
};

// Fresh keys every call; certificates valid from one hour ago for validity.
Result<TestCa> generateTestCa(std::chrono::hours validity = std::chrono::hours(24 * 30));

// Writes ca.pem, server.pem and server.key (0600) into dir (created 0700 if
// missing), atomically per file.
Status writeTestCa(const TestCa& ca, const std::string& dir);

// Reads the three files writeTestCa wrote.
Result<TestCa> readTestCa(const std::string& dir);

}  // namespace plexd::tlstest
