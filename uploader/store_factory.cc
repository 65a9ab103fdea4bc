#include "uploader/store_factory.h"

#include <cctype>
#include <cstdlib>

#include "uploader/local_store.h"
#include "uploader/s3_store.h"

namespace scribefs {
namespace {

constexpr char kUsage[] = " (expected s3://BUCKET[/PREFIX] or file:///ABSOLUTE/PATH)";

Status BadUrl(const std::string& url, const std::string& why) {
  return Status::Error(EINVAL, "target \"" + url + "\": " + why + kUsage);
}

Result<std::string> PercentDecode(const std::string& url, const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      return BadUrl(url, "bad %-escape");
    }
    char c = static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
    if (c == '\0') return BadUrl(url, "%00 in path");
    out.push_back(c);
    i += 2;
  }
  return out;
}

// S3 bucket naming rules (3-63 of a-z 0-9 . -, starting and ending with a
// letter or digit); "_" and capitals are tolerated for older custom servers.
bool ValidBucket(const std::string& b) {
  if (b.size() < 3 || b.size() > 63) return false;
  for (char c : b) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_')) {
      return false;
    }
  }
  return std::isalnum(static_cast<unsigned char>(b.front())) &&
         std::isalnum(static_cast<unsigned char>(b.back()));
}

}  // namespace

Result<TargetUrl> ParseTargetUrl(const std::string& url) {
  size_t sep = url.find("://");
  if (sep == std::string::npos) return BadUrl(url, "no scheme");
  std::string scheme = url.substr(0, sep);
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string rest = url.substr(sep + 3);
  if (rest.find_first_of("?#") != std::string::npos) {
    return BadUrl(url, "query strings and fragments are not supported");
  }
  TargetUrl out;
  if (scheme == "s3") {
    out.kind = TargetUrl::Kind::kS3;
    size_t slash = rest.find('/');
    out.bucket = rest.substr(0, slash);
    if (out.bucket.empty()) return BadUrl(url, "no bucket");
    if (!ValidBucket(out.bucket)) {
      return BadUrl(url, "\"" + out.bucket + "\" is not a valid bucket name");
    }
    if (slash != std::string::npos) {
      std::string prefix = rest.substr(slash + 1);
      while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
      if (!prefix.empty()) {
        Status st = ValidateKey(prefix, "prefix");
        if (!st.ok()) return BadUrl(url, st.message());
      }
      out.prefix = prefix;
    }
    return out;
  }
  if (scheme == "file") {
    out.kind = TargetUrl::Kind::kFile;
    if (rest.empty() || rest.front() != '/') {
      // file://host/path: only the local host makes sense.
      if (rest.rfind("localhost/", 0) == 0) {
        rest = rest.substr(9);
      } else {
        return BadUrl(url, "the path must be absolute, as in file:///srv/backup");
      }
    }
    auto path = PercentDecode(url, rest);
    if (!path.ok()) return path.status();
    if (*path == "/") return BadUrl(url, "refusing to use / as the target");
    out.path = std::move(path).value();
    return out;
  }
  return BadUrl(url, "unknown scheme \"" + scheme + "\"");
}

Result<std::unique_ptr<ObjectStore>> OpenStore(const std::string& url,
                                               const TargetOptions& options) {
  auto parsed = ParseTargetUrl(url);
  if (!parsed.ok()) return parsed.status();
  GetEnvFn env = options.getenv_fn ? options.getenv_fn : GetEnvFn([](const char* n) {
    return static_cast<const char*>(std::getenv(n));
  });
  if (parsed->kind == TargetUrl::Kind::kFile) {
    if (!options.endpoint.empty()) {
      return Status::Error(EINVAL, "target \"" + url + "\": --endpoint applies to s3:// only");
    }
    auto store = LocalStore::Open(parsed->path, options.bandwidth);
    if (!store.ok()) return store.status();
    return std::unique_ptr<ObjectStore>(std::move(store).value());
  }
  S3Options s3;
  s3.bucket = parsed->bucket;
  s3.prefix = parsed->prefix;
  s3.endpoint = options.endpoint;
  s3.region = options.region;
  for (const char* var : {"AWS_REGION", "AWS_DEFAULT_REGION"}) {
    if (!s3.region.empty()) break;
    if (const char* v = env(var); v && *v) s3.region = v;
  }
  if (s3.region.empty()) s3.region = "us-east-1";
  s3.verify_tls = options.verify_tls;
  s3.ca_file = options.ca_file;
  s3.bandwidth = options.bandwidth;
  auto creds = CredentialsProvider::Load(env);
  if (!creds.ok()) return creds.status().WithContext("target " + url);
  s3.credentials_provider = std::move(creds).value();
  auto store = S3Store::Create(std::move(s3));
  if (!store.ok()) return store.status().WithContext("target " + url);
  return std::unique_ptr<ObjectStore>(std::move(store).value());
}

}  // namespace scribefs
