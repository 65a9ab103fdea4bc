#include "uploader/sigv4.h"

#include <algorithm>
#include <cctype>

#include "common/strings.h"
#include "uploader/digest.h"

namespace scribefs::sigv4 {
namespace {

// Trim and collapse runs of spaces (and tabs) into one space.
std::string NormalizeValue(std::string_view v) {
  std::string out;
  bool in_space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      in_space = true;
      continue;
    }
    if (in_space && !out.empty()) out.push_back(' ');
    in_space = false;
    out.push_back(c);
  }
  return out;
}

// Sorted (lower-case name, normalized values joined with ',').
std::vector<std::pair<std::string, std::string>> CanonicalHeaderList(const KeyValues& headers) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [name, value] : headers) {
    std::string n = AsciiLower(name);
    std::string v = NormalizeValue(value);
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& p) { return p.first == n; });
    if (it != out.end()) {
      it->second += "," + v;
    } else {
      out.emplace_back(std::move(n), std::move(v));
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

std::string FormatTime(std::time_t t, const char* format) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  size_t n = std::strftime(buf, sizeof buf, format, &tm);
  return std::string(buf, n);
}

}  // namespace

std::string UriEncode(std::string_view s, bool encode_slash) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3 / 2);
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (c == '/' && !encode_slash)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string AmzDate(std::time_t t) { return FormatTime(t, "%Y%m%dT%H%M%SZ"); }
std::string DateStamp(std::time_t t) { return FormatTime(t, "%Y%m%d"); }

std::string CanonicalQueryString(const KeyValues& query) {
  std::vector<std::pair<std::string, std::string>> encoded;
  encoded.reserve(query.size());
  for (const auto& [name, value] : query) {
    encoded.emplace_back(UriEncode(name, true), UriEncode(value, true));
  }
  std::sort(encoded.begin(), encoded.end());
  std::string out;
  for (const auto& [name, value] : encoded) {
    if (!out.empty()) out.push_back('&');
    out += name;
    out.push_back('=');
    out += value;
  }
  return out;
}

std::string CanonicalHeaders(const KeyValues& headers) {
  std::string out;
  for (const auto& [name, value] : CanonicalHeaderList(headers)) {
    out += name;
    out.push_back(':');
    out += value;
    out.push_back('\n');
  }
  return out;
}

std::string SignedHeaders(const KeyValues& headers) {
  std::string out;
  for (const auto& [name, value] : CanonicalHeaderList(headers)) {
    if (!out.empty()) out.push_back(';');
    out += name;
  }
  return out;
}

std::string CanonicalRequest(const Request& request) {
  std::string out = request.method;
  out.push_back('\n');
  out += request.canonical_uri.empty() ? "/" : request.canonical_uri;
  out.push_back('\n');
  out += CanonicalQueryString(request.query);
  out.push_back('\n');
  out += CanonicalHeaders(request.headers);
  out.push_back('\n');
  out += SignedHeaders(request.headers);
  out.push_back('\n');
  out += request.payload_hash;
  return out;
}

std::string CredentialScope(std::string_view date_stamp, std::string_view region,
                            std::string_view service) {
  std::string out(date_stamp);
  out += '/';
  out += region;
  out += '/';
  out += service;
  out += "/aws4_request";
  return out;
}

Result<std::string> StringToSign(std::string_view amz_date, std::string_view scope,
                                 std::string_view canonical_request) {
  auto hash = Sha256(canonical_request);
  if (!hash.ok()) return hash.status();
  std::string out = "AWS4-HMAC-SHA256\n";
  out += amz_date;
  out += '\n';
  out += scope;
  out += '\n';
  out += HexEncode(*hash);
  return out;
}

Result<std::string> SigningKey(std::string_view secret, std::string_view date_stamp,
                               std::string_view region, std::string_view service) {
  std::string key = "AWS4";
  key += secret;
  for (std::string_view part : {date_stamp, region, service, std::string_view("aws4_request")}) {
    auto next = HmacSha256(key, part);
    if (!next.ok()) return next.status();
    key = std::move(next).value();
  }
  return key;
}

Result<std::string> Signature(std::string_view signing_key, std::string_view string_to_sign) {
  auto mac = HmacSha256(signing_key, string_to_sign);
  if (!mac.ok()) return mac.status();
  return HexEncode(*mac);
}

Result<std::string> Authorization(const Request& request, const Credentials& credentials,
                                  std::string_view region, std::string_view service,
                                  std::string_view amz_date) {
  if (amz_date.size() < 8) return Status::Error(EINVAL, "sigv4: bad x-amz-date");
  std::string_view date_stamp = amz_date.substr(0, 8);
  std::string scope = CredentialScope(date_stamp, region, service);
  auto sts = StringToSign(amz_date, scope, CanonicalRequest(request));
  if (!sts.ok()) return sts.status();
  auto key = SigningKey(credentials.secret_access_key, date_stamp, region, service);
  if (!key.ok()) return key.status();
  auto sig = Signature(*key, *sts);
  if (!sig.ok()) return sig.status();
  return "AWS4-HMAC-SHA256 Credential=" + credentials.access_key_id + "/" + scope +
         ", SignedHeaders=" + SignedHeaders(request.headers) + ", Signature=" + *sig;
}

Result<std::string> Sign(Request* request, const Credentials& credentials, std::string_view region,
                         std::string_view service, std::time_t now) {
  std::string amz_date = AmzDate(now);
  request->headers.emplace_back("x-amz-date", amz_date);
  if (!credentials.session_token.empty()) {
    request->headers.emplace_back("x-amz-security-token", credentials.session_token);
  }
  return Authorization(*request, credentials, region, service, amz_date);
}

}  // namespace scribefs::sigv4
