// A small test-only message set and channel spec (types 0xf000..) exercising every kind of
// field and permission: one-way, request/response, fd-carrying, direction-restricted, set item.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "ipc/channel_spec.h"
#include "ipc/messages.h"

namespace plexd::ipc::test {

inline constexpr MsgType kTestNote = static_cast<MsgType>(0xf001);
inline constexpr MsgType kTestFd = static_cast<MsgType>(0xf002);
inline constexpr MsgType kTestEcho = static_cast<MsgType>(0xf003);
inline constexpr MsgType kTestEchoReply = static_cast<MsgType>(0xf004);
inline constexpr MsgType kTestItem = static_cast<MsgType>(0xf005);
inline constexpr MsgType kTestFromNetd = static_cast<MsgType>(0xf006);
inline constexpr MsgType kTestUnlisted = static_cast<MsgType>(0xf0ff);

// ctld -> netd, one-way.
struct TestNote {
  static constexpr MsgType kType = kTestNote;
  static constexpr std::string_view kName = "test_note";
  static constexpr bool kCarriesFd = false;
  std::string text;
  uint8_t level = 0;
  bool urgent = false;
  template <class V>
  void fields(V& v) {
    v(text, "text", Max{64});
    v(level, "level", Range<uint8_t>{0, 7});
    v(urgent, "urgent");
  }
};

// ctld -> netd with an fd.
struct TestFd {
  static constexpr MsgType kType = kTestFd;
  static constexpr std::string_view kName = "test_fd";
  static constexpr bool kCarriesFd = true;
  uint32_t tag = 0;
  template <class V>
  void fields(V& v) {
    v(tag, "tag");
  }
};

struct TestEchoReply {
  static constexpr MsgType kType = kTestEchoReply;
  static constexpr std::string_view kName = "test_echo_reply";
  static constexpr bool kCarriesFd = false;
  static constexpr bool kIsResponse = true;
  std::string text;
  template <class V>
  void fields(V& v) {
    v(text, "text", Max{256});
  }
};

// ctld -> netd request.
struct TestEcho {
  static constexpr MsgType kType = kTestEcho;
  static constexpr std::string_view kName = "test_echo";
  static constexpr bool kCarriesFd = false;
  using Response = TestEchoReply;
  std::string text;
  template <class V>
  void fields(V& v) {
    v(text, "text", Max{256});
  }
};

// Element of chunked sets, ctld -> netd. validate(): id 0 is reserved.
struct TestItem {
  static constexpr MsgType kType = kTestItem;
  static constexpr std::string_view kName = "test_item";
  static constexpr bool kCarriesFd = false;
  uint32_t id = 0;
  std::array<uint8_t, 32> key{};
  std::string name;
  std::vector<uint16_t> ports;
  template <class V>
  void fields(V& v) {
    v(id, "id");
    v(key, "key");
    v(name, "name", Max{32});
    v(ports, "ports", Max{8});
  }
  Status validate() const {
    if (id == 0) return Error("id 0 is reserved");
    return okStatus();
  }
  bool operator==(const TestItem&) const = default;
};

// netd -> ctld only.
struct TestFromNetd {
  static constexpr MsgType kType = kTestFromNetd;
  static constexpr std::string_view kName = "test_from_netd";
  static constexpr bool kCarriesFd = false;
  uint64_t value = 0;
  template <class V>
  void fields(V& v) {
    v(value, "value");
  }
};

inline ChannelSpec makeTestSpec() {
  ChannelSpec s;
  s.name = "test-ctld-netd";
  s.a = Peer::ctld;
  s.b = Peer::netd;
  s.max_frame = 4096;
  s.max_pending_calls = 8;
  s.max_tx_items = 20000;
  s.max_tx_chunks = 1000;
  s.permissions = {
      permit<TestNote>({Peer::ctld}),         permit<TestFd>({Peer::ctld}),
      permit<TestEcho>({Peer::ctld}),         permit<TestEchoReply>({Peer::netd}),
      permitSetItem<TestItem>({Peer::ctld}),  permit<TestFromNetd>({Peer::netd}),
  };
  return s;
}

inline const ChannelSpec& testSpec() {
  static const ChannelSpec spec = makeTestSpec();
  return spec;
}

inline TestItem makeItem(uint32_t id) {
  TestItem it;
  it.id = id;
  for (size_t i = 0; i < it.key.size(); ++i) it.key[i] = static_cast<uint8_t>(id + i);
  it.name = "peer-" + std::to_string(id);
  it.ports = {static_cast<uint16_t>(id % 65536), 51820};
  return it;
}

}  // namespace plexd::ipc::test
