// s3_put_ceiling: how many small PUTs/s an S3 endpoint takes from a client
// that does nothing else, through scribefs's own S3 client (S3Store: one
// pooled curl handle per request in flight, SigV4, MD5 + SHA-256 of each
// body). Used by bench/flush_small.sh as the ceiling of the uploader's
// files/s on the same endpoint.
//
//   s3_put_ceiling SRC BUCKET PREFIX THREADS
// Every regular file under SRC (read into memory first, not timed) is PUT
// as PREFIX/<relative path>. Endpoint, region and keys from S3_ENDPOINT,
// S3_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY. Prints
// "files seconds puts_per_s cpu_seconds".
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "uploader/s3_store.h"

namespace {

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

const char* Env(const char* name) {
  const char* v = getenv(name);
  if (!v) {
    fprintf(stderr, "s3_put_ceiling: %s not set\n", name);
    exit(2);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: s3_put_ceiling SRC BUCKET PREFIX THREADS\n");
    return 2;
  }
  const std::filesystem::path src = argv[1];
  const int threads = std::max(1, atoi(argv[4]));
  std::vector<std::pair<std::string, std::string>> files;  // key, content
  for (const auto& e : std::filesystem::recursive_directory_iterator(src)) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    files.emplace_back(std::string(argv[3]) + "/" + e.path().lexically_relative(src).string(),
                       ss.str());
  }
  scribefs::S3Options o;
  o.bucket = argv[2];
  o.endpoint = Env("S3_ENDPOINT");
  o.region = Env("S3_REGION");
  o.credentials.access_key_id = Env("AWS_ACCESS_KEY_ID");
  o.credentials.secret_access_key = Env("AWS_SECRET_ACCESS_KEY");
  auto store = scribefs::S3Store::Create(o);
  if (!store.ok()) {
    fprintf(stderr, "s3_put_ceiling: %s\n", store.status().message().c_str());
    return 1;
  }
  std::atomic<size_t> next{0};
  std::atomic<int> failed{0};
  const double cpu0 = CpuSeconds();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&] {
      for (size_t k; (k = next++) < files.size();) {
        auto r = (*store)->Put(files[k].first, scribefs::Payload::FromMemory(files[k].second), {});
        if (!r.ok() && failed++ == 0)
          fprintf(stderr, "s3_put_ceiling: %s: %s\n", files[k].first.c_str(),
                  r.status().message().c_str());
      }
    });
  }
  for (auto& t : pool) t.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf("%zu %.2f %.0f %.2f\n", files.size(), secs, double(files.size()) / secs,
         CpuSeconds() - cpu0);
  return failed ? 1 : 0;
}
