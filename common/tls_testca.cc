#include "common/tls_testca.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cerrno>

#include "common/atomic_file.h"
#include "common/c_handle.h"

namespace plexd::tlstest {

namespace {

using X509Handle = CHandle<X509, &X509_free>;
using X509ExtHandle = CHandle<X509_EXTENSION, &X509_EXTENSION_free>;

Error sslError(std::string_view what) { return Error("cannot " + std::string(what) + " (OpenSSL error)"); }

Result<EvpPkey> newP256Key() {
  EvpPkey key(EVP_EC_gen("P-256"));
  if (!key) return sslError("generate an EC P-256 key");
  return key;
}

Status addExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509ExtHandle ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) return sslError("add certificate extension");
  return okStatus();
}

Result<X509Handle> makeCert(EVP_PKEY* subjectKey, const char* cn, X509* issuerCert, EVP_PKEY* issuerKey,
                            std::chrono::hours validity, bool isCa) {
  X509Handle cert(X509_new());
  if (!cert) return sslError("allocate a certificate");
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof(serial)) != 1) return sslError("draw a serial number");
  serial[0] &= 0x7F;  // positive
  CHandle<BIGNUM, &BN_free> bn(BN_bin2bn(serial, sizeof(serial), nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return sslError("set a serial number");
  }
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), validity.count() * 3600);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuerCert != nullptr ? X509_get_subject_name(issuerCert) : name);
  if (X509_set_pubkey(cert.get(), subjectKey) != 1) return sslError("set the certificate key");
  X509* issuer = issuerCert != nullptr ? issuerCert : cert.get();
  if (isCa) {
    if (auto s = addExt(cert.get(), issuer, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"); !s) return s.error();
    if (auto s = addExt(cert.get(), issuer, NID_key_usage, "critical,keyCertSign,cRLSign"); !s) return s.error();
    if (auto s = addExt(cert.get(), issuer, NID_subject_key_identifier, "hash"); !s) return s.error();
  } else {
    if (auto s = addExt(cert.get(), issuer, NID_basic_constraints, "critical,CA:FALSE"); !s) return s.error();
    if (auto s = addExt(cert.get(), issuer, NID_key_usage, "critical,digitalSignature"); !s) return s.error();
    if (auto s = addExt(cert.get(), issuer, NID_ext_key_usage, "serverAuth"); !s) return s.error();
    if (auto s = addExt(cert.get(), issuer, NID_subject_alt_name, "IP:127.0.0.1,IP:::1,DNS:localhost"); !s) {
      return s.error();
    }
    if (auto s = addExt(cert.get(), issuer, NID_authority_key_identifier, "keyid:always"); !s) return s.error();
  }
  if (X509_sign(cert.get(), issuerKey, EVP_sha256()) == 0) return sslError("sign the certificate");
  return cert;
}

Result<std::string> bioText(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  if (n <= 0 || data == nullptr) return sslError("serialise PEM");
  return std::string(data, static_cast<size_t>(n));
}

Result<std::string> certPem(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return sslError("write certificate PEM");
  return bioText(bio.get());
}

}  // namespace

Result<TestCa> generateTestCa(std::chrono::hours validity) {
  auto caKey = newP256Key();
  if (!caKey) return caKey.error();
  auto serverKey = newP256Key();
  if (!serverKey) return serverKey.error();
  auto ca = makeCert(caKey->get(), "plexd test CA", nullptr, caKey->get(), validity, true);
  if (!ca) return ca.error();
  auto server = makeCert(serverKey->get(), "localhost", ca->get(), caKey->get(), validity, false);
  if (!server) return server.error();

  TestCa out;
  auto caPem = certPem(ca->get());
  if (!caPem) return caPem.error();
  auto serverPem = certPem(server->get());
  if (!serverPem) return serverPem.error();
  Bio keyBio(BIO_new(BIO_s_mem()));
  if (!keyBio || PEM_write_bio_PrivateKey(keyBio.get(), serverKey->get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return sslError("write key PEM");
  }
  auto keyPem = bioText(keyBio.get());
  if (!keyPem) return keyPem.error();
  out.caCertPem = std::move(*caPem);
  out.serverCertPem = std::move(*serverPem);
  out.serverKeyPem = std::move(*keyPem);
  return out;
}

Status writeTestCa(const TestCa& ca, const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) return Error::sys("cannot create " + dir);
  if (auto s = writeFileAtomic(dir + "/ca.pem", ca.caCertPem, 0644); !s) return s;
  if (auto s = writeFileAtomic(dir + "/server.pem", ca.serverCertPem, 0644); !s) return s;
  return writeFileAtomic(dir + "/server.key", ca.serverKeyPem, 0600);
}

Result<TestCa> readTestCa(const std::string& dir) {
  TestCa out;
  auto a = readFileBounded(dir + "/ca.pem", 64 * 1024);
  if (!a) return a.error();
  auto b = readFileBounded(dir + "/server.pem", 64 * 1024);
  if (!b) return b.error();
  auto c = readFileBounded(dir + "/server.key", 64 * 1024);
  if (!c) return c.error();
  out.caCertPem = std::move(*a);
  out.serverCertPem = std::move(*b);
  out.serverKeyPem = std::move(*c);
  return out;
}

}  // namespace plexd::tlstest
