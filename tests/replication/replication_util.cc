#include "tests/replication/replication_util.h"

#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <thread>

#include "uploader/digest.h"

namespace scribefs::rep {

using Clock = std::chrono::steady_clock;

// ---- the S3 server -----------------------------------------------------------

std::optional<S3Env> LoadS3Env(std::string* error) {
  const char* path = getenv("SCRIBEFS_TEST_S3_ENV");
  if (!path || !*path) {
    *error = "SCRIBEFS_TEST_S3_ENV is not set (run through ctest, whose fixture rgw_up starts RGW)";
    return std::nullopt;
  }
  return LoadS3EnvFile(path, error);
}

std::optional<S3Env> LoadS3EnvFile(const std::string& file, std::string* error) {
  const char* path = file.c_str();
  std::ifstream in(path);
  if (!in) {
    *error = std::string("cannot read ") + path + ": did the rgw_up fixture fail?";
    return std::nullopt;
  }
  std::map<std::string, std::string> kv;
  std::string line;
  while (std::getline(in, line)) {
    size_t eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  for (const char* k : {"S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}) {
    if (kv[k].empty()) {
      *error = std::string(path) + " lacks " + k;
      return std::nullopt;
    }
  }
  S3Env e;
  e.endpoint = kv["S3_ENDPOINT"];
  if (!kv["S3_REGION"].empty()) e.region = kv["S3_REGION"];
  e.access_key = kv["AWS_ACCESS_KEY_ID"];
  e.secret_key = kv["AWS_SECRET_ACCESS_KEY"];
  // http://HOST:PORT
  std::string hp = e.endpoint.substr(e.endpoint.find("//") + 2);
  size_t colon = hp.rfind(':');
  if (colon == std::string::npos) {
    *error = "S3_ENDPOINT " + e.endpoint + " has no port";
    return std::nullopt;
  }
  e.host = hp.substr(0, colon);
  e.port = atoi(hp.c_str() + colon + 1);
  return e;
}

std::string NewBucketName(const std::string& tag) {
  static std::mt19937_64 rng{std::random_device{}()};
  char rnd[9];
  snprintf(rnd, sizeof rnd, "%08x", static_cast<unsigned>(rng()));
  std::string name = "rep-" + tag + "-" + std::to_string(getpid()) + "-" + rnd;
  for (char& c : name) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) c = '-';
  }
  return name.substr(0, 63);
}

std::unique_ptr<S3Store> OpenS3(const S3Env& env, const std::string& bucket,
                                const std::string& endpoint) {
  S3Options o;
  o.bucket = bucket;
  o.endpoint = endpoint.empty() ? env.endpoint : endpoint;
  o.region = env.region;
  o.credentials = {env.access_key, env.secret_key, ""};
  o.connect_timeout_ms = 3000;
  auto s = S3Store::Create(o);
  if (!s.ok()) return nullptr;
  return std::move(s.value());
}

std::string CreateBucket(const S3Env& env, const std::string& bucket) {
  auto s = OpenS3(env, bucket);
  if (!s) return "cannot create an S3 client";
  StoreStatus st = s->CreateBucket();
  return st.ok() ? "" : st.ToString() + " (" + st.error_code() + ")";
}

// ---- the AWS CLI ---------------------------------------------------------------

std::string AwsBin() {
  const char* env = getenv("SCRIBEFS_TEST_AWS");
  if (env && *env) return env;
  if (access("/usr/bin/aws", X_OK) == 0) return "/usr/bin/aws";
  return "aws";
}

it::RunResult Aws(const S3Env& env, const std::vector<std::string>& args, double timeout_s) {
  std::vector<std::string> argv = {"env",
                                   "AWS_ACCESS_KEY_ID=" + env.access_key,
                                   "AWS_SECRET_ACCESS_KEY=" + env.secret_key,
                                   "AWS_SESSION_TOKEN=",
                                   "AWS_EC2_METADATA_DISABLED=true",
                                   "AWS_PAGER=",
                                   AwsBin(),
                                   "--endpoint-url",
                                   env.endpoint,
                                   "--region",
                                   env.region};
  argv.insert(argv.end(), args.begin(), args.end());
  return it::RunCommand(argv, timeout_s);
}

std::optional<std::map<std::string, ListedObject>> AwsList(const S3Env& env,
                                                           const std::string& bucket,
                                                           std::string* error) {
  it::RunResult r = Aws(env, {"s3api", "list-objects-v2", "--bucket", bucket, "--output", "json"});
  if (r.exit_code != 0) {
    *error = "aws s3api list-objects-v2: " + r.Describe();
    return std::nullopt;
  }
  std::map<std::string, ListedObject> out;
  if (r.out.find_first_not_of(" \r\n\t") == std::string::npos) return out;  // empty bucket
  try {
    auto j = nlohmann::json::parse(r.out);
    if (j.contains("Contents")) {
      for (const auto& o : j["Contents"]) {
        ListedObject lo;
        lo.size = o.value("Size", uint64_t(0));
        lo.etag = o.value("ETag", std::string());
        if (lo.etag.size() >= 2 && lo.etag.front() == '"') lo.etag = lo.etag.substr(1, lo.etag.size() - 2);
        std::string key = o.at("Key").get<std::string>();
        // The reserved .scribefs/ (history, checkpoint manifests) is not
        // part of the mirror.
        if (key.rfind(".scribefs/", 0) == 0) continue;
        out[key] = lo;
      }
    }
  } catch (const std::exception& e) {
    *error = std::string("cannot parse the listing: ") + e.what() + ": " + r.out.substr(0, 500);
    return std::nullopt;
  }
  return out;
}

std::optional<nlohmann::json> AwsHead(const S3Env& env, const std::string& bucket,
                                      const std::string& key, std::string* error) {
  it::RunResult r =
      Aws(env, {"s3api", "head-object", "--bucket", bucket, "--key", key, "--output", "json"}, 60);
  if (r.exit_code != 0) {
    *error = "aws s3api head-object " + key + ": " + r.Describe();
    return std::nullopt;
  }
  try {
    return nlohmann::json::parse(r.out);
  } catch (const std::exception& e) {
    *error = std::string("cannot parse head-object output: ") + e.what();
    return std::nullopt;
  }
}

// ---- the journal and the uploader's counters ----------------------------------

namespace {

// A read-only connection to STATE/journal.db (WAL: reads never block the daemon).
struct Db {
  sqlite3* db = nullptr;
  explicit Db(const std::string& state_dir) {
    std::string uri = "file:" + state_dir + "/journal.db?mode=ro";
    if (sqlite3_open_v2(uri.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, nullptr) !=
        SQLITE_OK) {
      sqlite3_close(db);
      db = nullptr;
      return;
    }
    sqlite3_busy_timeout(db, 5000);
  }
  ~Db() { sqlite3_close(db); }
};

}  // namespace

UploaderCounters ReadCounters(const std::string& state_dir) {
  UploaderCounters c;
  Db d(state_dir);
  if (!d.db) return c;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(d.db, "SELECT value FROM meta WHERE key='uploader'", -1, &st, nullptr) !=
      SQLITE_OK)
    return c;
  if (sqlite3_step(st) == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(st, 0);
    c.raw = t ? reinterpret_cast<const char*>(t) : "";
  }
  sqlite3_finalize(st);
  if (c.raw.empty()) return c;
  try {
    auto j = nlohmann::json::parse(c.raw);
    c.present = true;
    c.uploads = j.value("uploads", uint64_t(0));
    c.copies = j.value("copies", uint64_t(0));
    c.deletes = j.value("deletes", uint64_t(0));
    c.partial_uploads = j.value("partial_uploads", uint64_t(0));
    c.skipped_unchanged = j.value("skipped_unchanged", uint64_t(0));
    c.retries = j.value("retries", uint64_t(0));
    c.failures = j.value("failures", uint64_t(0));
    if (j.contains("retry_causes") && j["retry_causes"].is_object())
      for (const auto& [cause, n] : j["retry_causes"].items())
        if (n.is_number_unsigned()) c.retry_causes[cause] = n.get<uint64_t>();
    c.bytes_sent = j.value("bytes_sent", uint64_t(0));
    c.last_error = j.value("last_error", std::string());
    c.updated_ns = j.value("updated_ns", int64_t(0));
  } catch (const std::exception&) {
    c.present = false;
  }
  return c;
}

std::map<std::string, int64_t> CountStates(const std::string& state_dir) {
  std::map<std::string, int64_t> out;
  Db d(state_dir);
  if (!d.db) return out;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(d.db, "SELECT state, count(*) FROM records GROUP BY state", -1, &st,
                         nullptr) != SQLITE_OK)
    return out;
  while (sqlite3_step(st) == SQLITE_ROW)
    out[reinterpret_cast<const char*>(sqlite3_column_text(st, 0))] = sqlite3_column_int64(st, 1);
  sqlite3_finalize(st);
  return out;
}

WaitResult WaitForUploads(const std::string& state_dir, double timeout_s, double quiet_s) {
  WaitResult w;
  auto start = Clock::now();
  auto since = [&](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  std::string last_counters = "\x01";  // never equal to a real value
  auto quiet_since = Clock::now();
  while (true) {
    auto states = CountStates(state_dir);
    int64_t busy = states["pending"] + states["uploading"];
    std::string counters = ReadCounters(state_dir).raw;
    if (busy > 0 || counters != last_counters) {
      quiet_since = Clock::now();
      last_counters = counters;
    } else if (since(quiet_since) >= quiet_s) {
      w.ok = true;
      w.seconds = since(start);
      return w;
    }
    if (since(start) > timeout_s) {
      w.seconds = since(start);
      w.why = "after " + std::to_string(static_cast<int>(w.seconds)) + " s: " +
              std::to_string(states["pending"]) + " pending, " +
              std::to_string(states["uploading"]) + " uploading, " +
              std::to_string(states["failed"]) + " failed; counters " +
              (counters.empty() ? "(none)" : counters);
      return w;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// ---- hashing ---------------------------------------------------------------

namespace {

std::string HashOf(Hasher::Algorithm alg, const std::string& data) {
  auto h = Hasher::Create(alg);
  if (!h.ok() || !h->Update(data).ok()) return "";
  auto d = h->Finish();
  return d.ok() ? HexEncode(*d) : "";
}

std::string HashOfFile(Hasher::Algorithm alg, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  auto h = Hasher::Create(alg);
  if (!h.ok()) return "";
  std::string buf(1 << 20, '\0');
  while (in) {
    in.read(buf.data(), buf.size());
    std::streamsize n = in.gcount();
    if (n > 0 && !h->Update(std::string_view(buf.data(), n)).ok()) return "";
  }
  if (in.bad()) return "";
  auto d = h->Finish();
  return d.ok() ? HexEncode(*d) : "";
}

}  // namespace

std::string Sha256Hex(const std::string& data) { return HashOf(Hasher::Algorithm::kSha256, data); }
std::string Md5Hex(const std::string& data) { return HashOf(Hasher::Algorithm::kMd5, data); }
std::string Sha256OfFile(const std::string& path) {
  return HashOfFile(Hasher::Algorithm::kSha256, path);
}
std::string Md5OfFile(const std::string& path) { return HashOfFile(Hasher::Algorithm::kMd5, path); }

std::string RandomBytes(size_t n, uint64_t seed) {
  std::string s(n, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x1234567;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    memcpy(&s[i], &x, 8);
  }
  for (; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>(x);
  }
  return s;
}

// ---- what the target should hold --------------------------------------------

std::map<std::string, Expected> ExpectedObjects(const std::string& root,
                                                const std::vector<std::string>& skip) {
  std::map<std::string, Expected> out;
  for (const auto& [rel, st] : it::ListTree(root)) {
    std::string first = rel.substr(0, rel.find('/'));
    if (std::find(skip.begin(), skip.end(), first) != skip.end()) continue;
    Expected e;
    e.mode = st.st_mode;
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    e.mtime_ns = it::MtimeNs(st);
    e.local_path = root + "/" + rel;
    if (S_ISDIR(st.st_mode)) {
      e.type = 'd';
      out[rel + "/"] = e;
    } else if (S_ISLNK(st.st_mode)) {
      e.type = 'l';
      char buf[PATH_MAX];
      ssize_t n = readlink(e.local_path.c_str(), buf, sizeof buf);
      std::string target(buf, n > 0 ? n : 0);
      e.size = target.size();
      e.sha256 = Sha256Hex(target);
      e.md5 = Md5Hex(target);
      out[rel] = e;
    } else {
      e.type = 'f';
      e.size = st.st_size;
      e.sha256 = Sha256OfFile(e.local_path);
      e.md5 = Md5OfFile(e.local_path);
      out[rel] = e;
    }
  }
  return out;
}

std::vector<std::string> CheckMetadata(const std::string& key, const Expected& e,
                                       const std::map<std::string, std::string>& meta) {
  std::vector<std::string> problems;
  auto expect = [&](const std::string& name, const std::string& want) {
    auto it = meta.find(name);
    std::string got = it == meta.end() ? "(missing)" : it->second;
    if (got != want) problems.push_back(key + ": x-amz-meta-" + name + " = " + got + ", want " + want);
  };
  expect("mode", std::to_string(e.mode));
  expect("uid", std::to_string(e.uid));
  expect("gid", std::to_string(e.gid));
  if (e.type != 'd') {
    expect("mtime", std::to_string(e.mtime_ns / 1000000000));
    expect("scribefs-mtime-ns", std::to_string(e.mtime_ns));
  }
  return problems;
}

std::string Head(const std::vector<std::string>& items, size_t max) {
  std::string s;
  for (size_t i = 0; i < items.size() && i < max; ++i) s += "\n  " + items[i];
  if (items.size() > max) s += "\n  ... and " + std::to_string(items.size() - max) + " more";
  return s;
}

}  // namespace scribefs::rep
