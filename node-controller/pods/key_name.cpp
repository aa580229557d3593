#include "pods/key_name.h"

#include <openssl/evp.h>

namespace colo::node {

std::string keyName(const std::string& key, std::size_t max) {
  if (key.size() <= max) return key;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(key.data(), key.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string name = key.substr(0, 16) + "-";
  for (unsigned i = 0; i < 12 && i < len; ++i) {
    name += kHex[digest[i] >> 4];
    name += kHex[digest[i] & 0xf];
  }
  return name;
}

}  // namespace colo::node
