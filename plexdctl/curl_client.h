// ApiClient over libcurl's easy interface: HTTP/1.1 on the node API's Unix
// socket (CURLOPT_UNIX_SOCKET_PATH), bounded in time and answer size.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "plexdctl/client.h"

namespace plexd::ctl {

// Answers larger than this are refused (EMSGSIZE); the API's largest answer
// (a full state) is far below.
inline constexpr size_t kMaxAnswerBytes = 32 * 1024 * 1024;

// curl_global_init must have run (main does it once).
std::unique_ptr<ApiClient> makeCurlClient(std::string socketPath, std::chrono::milliseconds timeout);

}  // namespace plexd::ctl
