// AWS Signature Version 4 as pure functions: no clock, no I/O, no globals. The
// caller passes the time; tests check every step against AWS's published
// vectors (tests/uploader/sigv4_test.cc).
//
// S3 flavour: the canonical URI is the path as sent, URI-encoded once per
// segment (S3 neither normalizes nor double-encodes it), and every header in
// Request::headers is signed.
#pragma once

#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace scribefs::sigv4 {

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty unless temporary credentials
};

using KeyValues = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method;         // "GET", "PUT", ...
  std::string canonical_uri;  // encoded path as sent, e.g. "/bucket/a%20b"; "/" at least
  KeyValues query;            // raw (not encoded) names and values, any order
  KeyValues headers;          // any case and order; a repeated name is joined with ","
  std::string payload_hash;   // hex SHA-256 of the body
};

// AWS URI encoding: A-Z a-z 0-9 - _ . ~ stay, every other byte becomes %XX
// (upper-case hex); '/' stays unless encode_slash.
std::string UriEncode(std::string_view s, bool encode_slash);

// "20150830T123600Z" and "20150830" for `t` (UTC).
std::string AmzDate(std::time_t t);
std::string DateStamp(std::time_t t);

// Query string in canonical form: encoded, sorted by name then value, "a=1&b=".
// Also what the client sends, so signed and sent never differ.
std::string CanonicalQueryString(const KeyValues& query);
// "name:value\n" lines sorted by lower-case name; values trimmed, inner runs of
// spaces collapsed.
std::string CanonicalHeaders(const KeyValues& headers);
// "host;x-amz-date".
std::string SignedHeaders(const KeyValues& headers);
std::string CanonicalRequest(const Request& request);

// "20150830/us-east-1/service/aws4_request".
std::string CredentialScope(std::string_view date_stamp, std::string_view region,
                            std::string_view service);
Result<std::string> StringToSign(std::string_view amz_date, std::string_view scope,
                                 std::string_view canonical_request);
// Raw 32-byte key: HMAC chain over "AWS4"+secret, date, region, service, "aws4_request".
Result<std::string> SigningKey(std::string_view secret, std::string_view date_stamp,
                               std::string_view region, std::string_view service);
// Hex HMAC-SHA256 of string_to_sign under signing_key.
Result<std::string> Signature(std::string_view signing_key, std::string_view string_to_sign);

// The Authorization header value for `request`, whose headers must already
// include x-amz-date (and x-amz-security-token when a session token is used).
Result<std::string> Authorization(const Request& request, const Credentials& credentials,
                                  std::string_view region, std::string_view service,
                                  std::string_view amz_date);

// Signs `request` at time `now`: adds x-amz-date (and x-amz-security-token when
// the credentials carry one) to its headers and returns the Authorization
// header value. The caller must send exactly request->headers.
Result<std::string> Sign(Request* request, const Credentials& credentials, std::string_view region,
                         std::string_view service, std::time_t now);

}  // namespace scribefs::sigv4
