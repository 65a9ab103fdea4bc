#include "uploader/credentials.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

namespace scribefs {
namespace {

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string Env(const GetEnvFn& getenv_fn, const char* name) {
  const char* v = getenv_fn(name);
  return v ? std::string(v) : std::string();
}

}  // namespace

Result<sigv4::Credentials> ParseCredentialsFile(const std::string& text, const std::string& profile,
                                                const std::string& source) {
  std::istringstream in(text);
  std::string line;
  bool in_section = false;
  bool found_section = false;
  sigv4::Credentials creds;
  while (std::getline(in, line)) {
    std::string t = Trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[' && t.back() == ']') {
      std::string name = Trim(t.substr(1, t.size() - 2));
      // ~/.aws/config writes [profile NAME]; accept that spelling too.
      if (name.rfind("profile ", 0) == 0) name = Trim(name.substr(8));
      in_section = name == profile;
      found_section = found_section || in_section;
      continue;
    }
    if (!in_section) continue;
    size_t eq = t.find('=');
    if (eq == std::string::npos) continue;
    std::string key = Trim(t.substr(0, eq));
    std::string value = Trim(t.substr(eq + 1));
    if (key == "aws_access_key_id") creds.access_key_id = value;
    if (key == "aws_secret_access_key") creds.secret_access_key = value;
    if (key == "aws_session_token") creds.session_token = value;
  }
  if (!found_section) {
    return Status::Error(ENOENT, source + ": no profile [" + profile + "]");
  }
  if (creds.access_key_id.empty() || creds.secret_access_key.empty()) {
    return Status::Error(EINVAL, source + ": profile [" + profile +
                                     "] lacks aws_access_key_id or aws_secret_access_key");
  }
  return creds;
}

namespace {

// Where LoadCredentials looks: the environment's credentials (`fixed` set),
// or the shared file and profile.
struct CredentialsSource {
  bool fixed = false;
  sigv4::Credentials credentials;
  std::string file, profile;
};

Result<CredentialsSource> FindCredentials(const GetEnvFn& getenv_fn) {
  CredentialsSource src;
  std::string id = Env(getenv_fn, "AWS_ACCESS_KEY_ID");
  std::string secret = Env(getenv_fn, "AWS_SECRET_ACCESS_KEY");
  if (!id.empty() || !secret.empty()) {
    if (id.empty() || secret.empty()) {
      return Status::Error(EINVAL,
                           "S3 credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must both "
                           "be set");
    }
    src.fixed = true;
    src.credentials = sigv4::Credentials{id, secret, Env(getenv_fn, "AWS_SESSION_TOKEN")};
    return src;
  }
  src.profile = Env(getenv_fn, "AWS_PROFILE");
  if (src.profile.empty()) src.profile = "default";
  src.file = Env(getenv_fn, "AWS_SHARED_CREDENTIALS_FILE");
  if (src.file.empty()) {
    std::string home = Env(getenv_fn, "HOME");
    if (home.empty()) {
      return Status::Error(ENOENT,
                           "S3 credentials: AWS_ACCESS_KEY_ID is not set and HOME is unknown");
    }
    src.file = home + "/.aws/credentials";
  }
  return src;
}

Result<sigv4::Credentials> ReadCredentialsFile(const std::string& file,
                                               const std::string& profile) {
  std::ifstream in(file);
  if (!in) {
    return Status::Error(
        ENOENT, "S3 credentials: AWS_ACCESS_KEY_ID is not set and " + file + " cannot be read");
  }
  std::stringstream text;
  text << in.rdbuf();
  auto creds = ParseCredentialsFile(text.str(), profile, file);
  if (!creds.ok()) return creds.status().WithContext("S3 credentials");
  return creds;
}

bool SameCredentials(const sigv4::Credentials& a, const sigv4::Credentials& b) {
  return a.access_key_id == b.access_key_id && a.secret_access_key == b.secret_access_key &&
         a.session_token == b.session_token;
}

}  // namespace

Result<sigv4::Credentials> LoadCredentials(const GetEnvFn& getenv_fn) {
  auto src = FindCredentials(getenv_fn);
  if (!src.ok()) return src.status();
  if (src->fixed) return src->credentials;
  return ReadCredentialsFile(src->file, src->profile);
}

// ---------------------------------------------------------------------------

CredentialsProvider::CredentialsProvider(sigv4::Credentials credentials, std::string file,
                                         std::string profile, Stamp stamp)
    : file_(std::move(file)),
      profile_(std::move(profile)),
      credentials_(std::move(credentials)),
      stamp_(stamp) {}

std::shared_ptr<CredentialsProvider> CredentialsProvider::Fixed(sigv4::Credentials credentials) {
  return std::shared_ptr<CredentialsProvider>(
      new CredentialsProvider(std::move(credentials), "", "", Stamp{}));
}

Result<std::shared_ptr<CredentialsProvider>> CredentialsProvider::FromFile(
    const std::string& file, const std::string& profile) {
  // The stamp first: a change after it is seen by the next Current().
  Stamp stamp;
  struct stat st;
  if (stat(file.c_str(), &st) == 0) {
    stamp = {int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec, st.st_size, st.st_ino};
  }
  auto creds = ReadCredentialsFile(file, profile);
  if (!creds.ok()) return creds.status();
  return std::shared_ptr<CredentialsProvider>(
      new CredentialsProvider(std::move(creds).value(), file, profile, stamp));
}

Result<std::shared_ptr<CredentialsProvider>> CredentialsProvider::Load(const GetEnvFn& getenv_fn) {
  auto src = FindCredentials(getenv_fn);
  if (!src.ok()) return src.status();
  if (src->fixed) return Fixed(src->credentials);
  return FromFile(src->file, src->profile);
}

void CredentialsProvider::ReloadLocked(bool force) {
  struct stat st;
  if (stat(file_.c_str(), &st) != 0) return;  // gone for a moment: keep what works
  Stamp now{int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec, st.st_size, st.st_ino};
  if (!force && now == stamp_) return;
  auto creds = ReadCredentialsFile(file_, profile_);
  // Half written: keep the last good ones, and read it again next time.
  if (!creds.ok()) return;
  credentials_ = std::move(creds).value();
  stamp_ = now;
}

sigv4::Credentials CredentialsProvider::Current() {
  std::lock_guard lock(mu_);
  if (!file_.empty()) ReloadLocked(/*force=*/false);
  return credentials_;
}

bool CredentialsProvider::RefreshAfterRejection(const sigv4::Credentials& used) {
  std::lock_guard lock(mu_);
  if (file_.empty()) return false;
  ReloadLocked(/*force=*/true);
  return !SameCredentials(credentials_, used);
}

}  // namespace scribefs
