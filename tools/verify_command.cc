#include "tools/verify_command.h"

#include <chrono>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "tools/human.h"
#include "tools/verify.h"

namespace scribefs::ctl {
namespace {

constexpr std::chrono::milliseconds kProgressInterval{250};

using Json = nlohmann::ordered_json;

// Records the journal still has to upload (0 when no journal is at hand).
int64_t PendingRecords(const GlobalOptions& global) {
  auto loc = LocateState(global, getenv("SCRIBEFS_STATE_DIR"));
  if (!loc.ok()) return 0;
  auto reader = JournalReader::Open(loc->paths.journal());
  if (!reader.ok()) return 0;
  auto stats = reader.value()->Stats();
  return stats.ok() ? stats->pending_records : 0;
}

Json ToJson(const VerifyReport& r, const std::string& target, const std::string& dir,
            const VerifyConfig& config) {
  Json j;
  j["identical"] = r.identical();
  j["checked"] = r.checked;
  j["missing"] = r.missing;
  j["extra"] = r.extra;
  Json diff = Json::array();
  for (const auto& d : r.different) diff.push_back({{"path", d.path}, {"reason", d.reason}});
  j["different"] = std::move(diff);
  Json errs = Json::array();
  for (const auto& e : r.errors) errs.push_back({{"path", e.path}, {"error", e.error}});
  j["errors"] = std::move(errs);
  j["seconds"] = r.seconds;
  j["quick"] = config.quick;
  j["path"] = config.prefix;
  j["bytes_compared"] = r.bytes_compared;
  j["target"] = target;
  j["dir"] = dir;
  return j;
}

void PrintList(const char* label, const std::vector<std::string>& items,
               const std::vector<std::string>& details, size_t limit) {
  size_t shown = limit == 0 ? items.size() : std::min(limit, items.size());
  for (size_t i = 0; i < shown; ++i) {
    printf("%-10s %s", label, EscapeControl(items[i]).c_str());
    if (!details.empty()) printf(": %s", EscapeControl(details[i]).c_str());
    printf("\n");
  }
  if (shown < items.size())
    printf("%-10s ... and %zu more (--limit 0 or --json lists all)\n", label, items.size() - shown);
}

void PrintHuman(const VerifyReport& r, const std::string& target, const std::string& dir,
                const VerifyConfig& config, size_t limit) {
  printf("Target:    %s\n", EscapeControl(target).c_str());
  printf("Directory: %s%s%s\n", EscapeControl(dir).c_str(),
         config.prefix.empty() ? "" : "  path: ", EscapeControl(config.prefix).c_str());
  std::string how = config.quick ? "quick: size and mtime"
                                 : "content by SHA-256, " + FormatBytes(r.bytes_compared) + " read";
  if (r.identical()) {
    printf("identical: %llu paths compared (%s) in %s\n",
           static_cast<unsigned long long>(r.checked), how.c_str(),
           FormatDuration(r.seconds).c_str());
    return;
  }
  printf("%s: %llu paths compared (%s) in %s: %zu missing, %zu extra, %zu different, %zu errors\n",
         r.has_differences() ? "DIFFERENT" : "INCOMPLETE",
         static_cast<unsigned long long>(r.checked), how.c_str(), FormatDuration(r.seconds).c_str(),
         r.missing.size(), r.extra.size(), r.different.size(), r.errors.size());
  PrintList("missing", r.missing, {}, limit);
  PrintList("extra", r.extra, {}, limit);
  std::vector<std::string> paths, reasons;
  for (const auto& d : r.different) {
    paths.push_back(d.path);
    reasons.push_back(d.reason);
  }
  PrintList("different", paths, reasons, limit);
  paths.clear();
  reasons.clear();
  for (const auto& e : r.errors) {
    paths.push_back(e.path);
    reasons.push_back(e.error);
  }
  PrintList("error", paths, reasons, limit);
}

}  // namespace

int RunVerify(const GlobalOptions& global, const VerifyOptions& options) {
  VerifyConfig config;
  config.quick = options.quick;
  config.workers = options.workers;
  auto prefix = NormalizeVerifyPrefix(options.path);
  if (!prefix.ok()) return Fail(kExitUsage, prefix.status().message());
  config.prefix = *prefix;

  int code = kExitOk;
  auto target = ResolveTargetOrFail(global, options.target, &code);
  if (!target) return code;
  std::string dir = !options.dir.empty() ? options.dir : target->datadir;
  if (dir.empty())
    return Fail(kExitUsage, "which directory? give --dir DIR, or name the mount with -m DATADIR");

  bool tty = isatty(STDERR_FILENO) == 1;
  bool shown = false;
  if (tty) {
    // Redrawn at most 4 times a second, like restore's (the callback comes
    // once per path: thousands of times a second).
    auto last = std::chrono::steady_clock::time_point{};
    config.progress = [&shown, last](uint64_t done, uint64_t total) mutable {
      auto now = std::chrono::steady_clock::now();
      if (shown && done != total && now - last < kProgressInterval) return;
      last = now;
      fprintf(stderr, "\r\033[Kverify: %llu/%llu paths compared",
              static_cast<unsigned long long>(done), static_cast<unsigned long long>(total));
      fflush(stderr);
      shown = true;
    };
  }
  auto report = Verify(target->store.get(), dir, target->filter, config);
  if (shown) {
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
  }
  if (!report.ok()) return Fail(kExitFailure, "verify: " + report.status().message());

  if (global.json) {
    printf("%s\n", ToJson(*report, target->url, dir, config)
                       .dump(-1, ' ', false, Json::error_handler_t::replace)
                       .c_str());
  } else {
    PrintHuman(*report, target->url, dir, config, size_t(std::max(options.limit, 0)));
  }
  if (int out = FinishOutput(); out != kExitOk) return out;
  if (report->checked == 0 && !config.prefix.empty())
    return Fail(kExitFailure, "nothing matched --path " + EscapeControl(options.path) +
                                  ": no such path in " + EscapeControl(dir) + " nor in the target");
  bool mount_named = !global.datadir.empty() || !global.state_dir.empty() ||
                     getenv("SCRIBEFS_STATE_DIR") != nullptr;
  if (report->has_differences() && mount_named) {
    int64_t pending = PendingRecords(global);
    if (pending > 0)
      Note(std::to_string(pending) +
           " journal records are not uploaded yet; run 'scribectl flush' before verify");
  }
  if (!report->errors.empty()) return kExitFailure;
  return report->has_differences() ? kExitDifferences : kExitOk;
}

}  // namespace scribefs::ctl
