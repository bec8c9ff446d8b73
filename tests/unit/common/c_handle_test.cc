#include "common/c_handle.h"

#include <linux/netlink.h>

#include <catch2/catch.hpp>

#include <type_traits>

namespace {

int freed = 0;
int lastFreed = 0;
int countingFree(int* p) {
  ++freed;
  lastFreed = *p;
  delete p;
  return 0;
}

}  // namespace

// Stateless deleters: a handle is exactly one pointer.
static_assert(sizeof(plexd::NlSock) == sizeof(void*));
static_assert(sizeof(plexd::CurlEasy) == sizeof(void*));
static_assert(sizeof(plexd::EvpPkey) == sizeof(void*));
static_assert(!std::is_copy_constructible_v<plexd::NftnlRule>);

TEST_CASE("CHandle calls its free function exactly once, and never for null") {
  freed = 0;
  {
    plexd::CHandle<int, &countingFree> h(new int(42));
    plexd::CHandle<int, &countingFree> empty;
    plexd::CHandle<int, &countingFree> moved(std::move(h));
    CHECK(freed == 0);
  }
  CHECK(freed == 1);
  CHECK(lastFreed == 42);
  plexd::CHandle<int, &countingFree> r(new int(7));
  r.reset(new int(8));
  CHECK(freed == 2);
  CHECK(lastFreed == 7);
  r.reset();
  CHECK(freed == 3);
}

// Under the sanitizer build LeakSanitizer fails this test if any alias's
// deleter does not free its object.
TEST_CASE("every C handle alias frees what its library allocated") {
  plexd::NlSock sock(nl_socket_alloc());
  REQUIRE(sock);
  plexd::NlMsg msg(nlmsg_alloc());
  REQUIRE(msg);
  plexd::MnlSocket mnl(mnl_socket_open(NETLINK_NETFILTER));
  REQUIRE(mnl);
  char buf[8192];
  plexd::MnlBatch batch(mnl_nlmsg_batch_start(buf, sizeof buf));
  REQUIRE(batch);
  plexd::NftnlTable table(nftnl_table_alloc());
  plexd::NftnlChain chain(nftnl_chain_alloc());
  plexd::NftnlRule rule(nftnl_rule_alloc());
  plexd::NftnlSet set(nftnl_set_alloc());
  plexd::NftnlSetElem elem(nftnl_set_elem_alloc());
  REQUIRE((table && chain && rule && set && elem));
  plexd::CurlEasy easy(curl_easy_init());
  plexd::CurlMulti multi(curl_multi_init());
  plexd::CurlSlist headers(curl_slist_append(nullptr, "Accept: application/json"));
  REQUIRE((easy && multi && headers));
  plexd::EvpPkeyCtx kctx(EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr));
  REQUIRE(kctx);
  REQUIRE(EVP_PKEY_keygen_init(kctx.get()) == 1);
  EVP_PKEY* raw = nullptr;
  REQUIRE(EVP_PKEY_keygen(kctx.get(), &raw) == 1);
  plexd::EvpPkey key(raw);
  plexd::EvpMdCtx md(EVP_MD_CTX_new());
  plexd::EvpCipherCtx cipher(EVP_CIPHER_CTX_new());
  plexd::Bio bio(BIO_new(BIO_s_mem()));
  REQUIRE((key && md && cipher && bio));
  CHECK(BIO_write(bio.get(), "x", 1) == 1);
}
