// Where S3 credentials come from, as the AWS CLI looks for them:
//   1. AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN);
//   2. the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, default
//      ~/.aws/credentials), section [AWS_PROFILE] (default "default").
// Error messages name the variables, file and profile, never a secret.
//
// Temporary (STS session) credentials expire; whoever renews them (aws sso
// login, aws sts assume-role in a cron job, a credential helper) rewrites the
// shared credentials file. CredentialsProvider re-reads that file when it
// changes and when the server rejects what was signed with it, so a
// long-running daemon keeps working. Environment variables cannot change in a
// running process: credentials from the environment are fixed.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "common/status.h"
#include "uploader/sigv4.h"

namespace scribefs {

// Returns the value of an environment variable, or nullptr. Injectable for tests.
using GetEnvFn = std::function<const char*(const char*)>;

Result<sigv4::Credentials> LoadCredentials(const GetEnvFn& getenv_fn);

// Parses the INI text of a credentials file; `source` names it in errors.
Result<sigv4::Credentials> ParseCredentialsFile(const std::string& text, const std::string& profile,
                                                const std::string& source);

// The credentials to sign with now. Thread-safe.
class CredentialsProvider {
 public:
  // Fixed credentials (the environment, or a caller that has its own).
  static std::shared_ptr<CredentialsProvider> Fixed(sigv4::Credentials credentials);
  // What LoadCredentials finds; credentials from the shared file follow it.
  static Result<std::shared_ptr<CredentialsProvider>> Load(const GetEnvFn& getenv_fn);
  // Credentials from `file`, section [profile], re-read as it changes.
  static Result<std::shared_ptr<CredentialsProvider>> FromFile(const std::string& file,
                                                               const std::string& profile);

  // The current credentials. Re-reads the file first when its mtime, size or
  // inode changed since the last read (one stat). A file that cannot be read
  // or parsed right now (being rewritten) leaves the last good credentials.
  sigv4::Credentials Current();

  // The server rejected a request signed with `used` (expired token, unknown
  // key, bad signature): re-reads the file whatever its stat says (a rewrite
  // within one mtime tick, a clock set back). True when the credentials now
  // differ from `used`, i.e. the request is worth repeating.
  bool RefreshAfterRejection(const sigv4::Credentials& used);

  // True when the credentials can change (they come from a file): an expired
  // token is then worth retrying later, after whoever renews it has.
  bool CanChange() const { return !file_.empty(); }

 private:
  struct Stamp {
    int64_t mtime_ns = -1;
    off_t size = -1;
    ino_t ino = 0;
    bool operator==(const Stamp&) const = default;
  };
  CredentialsProvider(sigv4::Credentials credentials, std::string file, std::string profile,
                      Stamp stamp);
  // Reads the file (when `stamp` differs from the last one read, or `force`).
  void ReloadLocked(bool force);

  const std::string file_;  // empty: fixed
  const std::string profile_;
  std::mutex mu_;
  sigv4::Credentials credentials_;  // GUARDED_BY(mu_)
  Stamp stamp_;                     // GUARDED_BY(mu_): of the file as last read
};

}  // namespace scribefs
