#include "tests/uploader/test_util.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <sstream>

#include "uploader/digest.h"

namespace scribefs::testing_util {

TempDir::TempDir() {
  const char* base = getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/scribefs-test-XXXXXX";
  char* p = mkdtemp(tmpl.data());
  if (p) path_ = p;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  nftw(
      path_.c_str(),
      [](const char* p, const struct stat*, int type, struct FTW*) {
        // Make directories writable again in case a test removed the bit.
        if (type == FTW_DP) {
          chmod(p, 0700);
          return rmdir(p);
        }
        return unlink(p);
      },
      64, FTW_DEPTH | FTW_PHYS);
}

std::string Blob(size_t size, uint32_t seed) {
  std::mt19937 gen(seed);
  std::string out(size, '\0');
  for (size_t i = 0; i < size; i += 4) {
    uint32_t v = gen();
    for (size_t j = 0; j < 4 && i + j < size; ++j) out[i + j] = static_cast<char>(v >> (8 * j));
  }
  return out;
}

UniqueFd WriteFile(const std::string& path, const std::string& content) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out) return UniqueFd();
  }
  return UniqueFd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
}

std::string ReadFile(const std::string& path, bool* ok) {
  std::ifstream in(path, std::ios::binary);
  if (ok) *ok = static_cast<bool>(in);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string Md5Hex(const std::string& data) {
  auto r = Md5(data);
  return r.ok() ? HexEncode(*r) : "";
}

std::string Sha256Hex(const std::string& data) {
  auto r = Sha256(data);
  return r.ok() ? HexEncode(*r) : "";
}

std::string RandomHex(size_t bytes) {
  std::random_device rd;
  std::string raw(bytes, '\0');
  for (auto& c : raw) c = static_cast<char>(rd());
  return HexEncode(raw);
}

bool RewriteKeepingMtime(const std::string& path, const std::string& content) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return false;
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
  if (!fd.valid()) return false;
  if (write(fd.get(), content.data(), content.size()) != static_cast<ssize_t>(content.size())) {
    return false;
  }
  struct timespec t[2] = {st.st_atim, st.st_mtim};
  return futimens(fd.get(), t) == 0;
}

}  // namespace scribefs::testing_util
