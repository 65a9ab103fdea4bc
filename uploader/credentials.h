// Where S3 credentials come from, as the AWS CLI looks for them:
//   1. AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN);
//   2. the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, default
//      ~/.aws/credentials), section [AWS_PROFILE] (default "default").
// Error messages name the variables, file and profile, never a secret.
#pragma once

#include <functional>
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

}  // namespace scribefs
