#include "uploader/credentials.h"

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

Result<sigv4::Credentials> LoadCredentials(const GetEnvFn& getenv_fn) {
  std::string id = Env(getenv_fn, "AWS_ACCESS_KEY_ID");
  std::string secret = Env(getenv_fn, "AWS_SECRET_ACCESS_KEY");
  if (!id.empty() || !secret.empty()) {
    if (id.empty() || secret.empty()) {
      return Status::Error(EINVAL,
                           "S3 credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must both "
                           "be set");
    }
    return sigv4::Credentials{id, secret, Env(getenv_fn, "AWS_SESSION_TOKEN")};
  }
  std::string profile = Env(getenv_fn, "AWS_PROFILE");
  if (profile.empty()) profile = "default";
  std::string file = Env(getenv_fn, "AWS_SHARED_CREDENTIALS_FILE");
  if (file.empty()) {
    std::string home = Env(getenv_fn, "HOME");
    if (home.empty()) {
      return Status::Error(ENOENT,
                           "S3 credentials: AWS_ACCESS_KEY_ID is not set and HOME is unknown");
    }
    file = home + "/.aws/credentials";
  }
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

}  // namespace scribefs
