#include "common/listen_fds.h"

#include <fcntl.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>

#include <fmt/format.h>

namespace plexd {

Result<std::map<std::string, std::vector<UniqueFd>>> takeListenFds(std::string_view daemon,
                                                                   std::initializer_list<std::string_view> expected) {
  char** names = nullptr;
  // unset_environment=1: the variables describe fds of this process only.
  int n = sd_listen_fds_with_names(1, &names);
  if (n < 0) return Error::sys("sd_listen_fds_with_names", -n);
  std::map<std::string, std::vector<UniqueFd>> out;
  std::string unexpected;
  for (int i = 0; i < n; ++i) {
    const int fd = SD_LISTEN_FDS_START + i;
    std::string name = names && names[i] ? names[i] : "unknown";
    free(names ? names[i] : nullptr);
    // Take ownership first: an fd we refuse is closed, not leaked.
    UniqueFd owned(fd);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    bool known = false;
    for (std::string_view e : expected) known = known || e == name;
    if (!known) {
      if (unexpected.empty())
        unexpected = fmt::format("socket-activated fd {} is named '{}', which {} does not use", fd, name, daemon);
      continue;
    }
    out[name].push_back(std::move(owned));
  }
  free(names);
  if (!unexpected.empty()) {
    std::string list;
    for (std::string_view e : expected) list += (list.empty() ? "'" : ", '") + std::string(e) + "'";
    return Error(fmt::format("{} (expected {}; check FileDescriptorName= in the .socket unit, or "
                             "--fdname= of systemd-socket-activate)",
                             unexpected, list));
  }
  return out;
}

}  // namespace plexd
