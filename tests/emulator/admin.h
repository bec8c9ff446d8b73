// Helpers shared by the admin route files.
#pragma once

#include <rapidjson/document.h>

#include <optional>
#include <string>

#include "common/http_server.h"
#include "tests/emulator/emulator.h"

namespace plexd::emu::admin {

httpd::Response ok(std::string body = "{}");
httpd::Response bad(const httpd::Request& req, std::string detail, int status = 400);
// The body as JSON (empty body = {}); on failure *refusal is set.
std::optional<rapidjson::Document> body(const httpd::Request& req, httpd::Response* refusal);
Node* findNode(Emulator& e, const httpd::Request& req);
std::string optString(const rapidjson::Value& v, const char* name, std::string fallback = "");
int64_t optInt(const rapidjson::Value& v, const char* name, int64_t fallback);
std::optional<bool> optBool(const rapidjson::Value& v, const char* name);

void addNodeAdminRoutes(httpd::Router& r, Emulator& e);

}  // namespace plexd::emu::admin
