// RAII for C library handles: CHandle<T, &free_fn> is a unique_ptr whose
// deleter is a stateless call of free_fn (so it is pointer-sized), e.g.
//
//   CHandle<nl_sock, &nl_socket_free> sock(nl_socket_alloc());
//   if (!sock) return Error("cannot allocate netlink socket (out of memory)");
//
// The aliases below cover the libraries plexd uses. A target that uses an
// alias must link that library (libnl, libnftnl/libmnl, libcurl, OpenSSL);
// plexd_common links them all publicly.
#pragma once

#include <curl/curl.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <netlink/msg.h>
#include <netlink/socket.h>
#include <openssl/bio.h>
#include <openssl/evp.h>

#include <memory>

namespace plexd {

template <class T, auto Free>
struct CDeleter {
  // The free function's return value (some return an int, e.g. BIO_free,
  // mnl_socket_close) carries nothing actionable at destruction time.
  void operator()(T* p) const noexcept {
    if (p != nullptr) static_cast<void>(Free(p));
  }
};

template <class T, auto Free>
using CHandle = std::unique_ptr<T, CDeleter<T, Free>>;

// libnl
using NlSock = CHandle<nl_sock, &nl_socket_free>;
using NlMsg = CHandle<nl_msg, &nlmsg_free>;
// libmnl / libnftnl
using MnlSocket = CHandle<mnl_socket, &mnl_socket_close>;
using MnlBatch = CHandle<mnl_nlmsg_batch, &mnl_nlmsg_batch_stop>;
using NftnlTable = CHandle<nftnl_table, &nftnl_table_free>;
using NftnlChain = CHandle<nftnl_chain, &nftnl_chain_free>;
using NftnlRule = CHandle<nftnl_rule, &nftnl_rule_free>;
using NftnlSet = CHandle<nftnl_set, &nftnl_set_free>;
using NftnlSetElem = CHandle<nftnl_set_elem, &nftnl_set_elem_free>;
// libcurl
using CurlEasy = CHandle<CURL, &curl_easy_cleanup>;
using CurlMulti = CHandle<CURLM, &curl_multi_cleanup>;
using CurlSlist = CHandle<curl_slist, &curl_slist_free_all>;
// OpenSSL
using EvpPkey = CHandle<EVP_PKEY, &EVP_PKEY_free>;
using EvpPkeyCtx = CHandle<EVP_PKEY_CTX, &EVP_PKEY_CTX_free>;
using EvpMdCtx = CHandle<EVP_MD_CTX, &EVP_MD_CTX_free>;
using EvpCipherCtx = CHandle<EVP_CIPHER_CTX, &EVP_CIPHER_CTX_free>;
using Bio = CHandle<BIO, &BIO_free>;

}  // namespace plexd
