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

Json HistoryToJson(const HistoryVerifyReport& r, const std::string& target, bool deep) {
  auto opt = [](const std::optional<uint64_t>& v) { return v ? Json(*v) : Json(nullptr); };
  Json problems = Json::array();
  for (const HistoryChunkProblem& p : r.problems) {
    Json uses = Json::array();
    for (const HistoryChunkUse& u : p.used_by)
      uses.push_back({{"path", u.path}, {"seq", u.seq}, {"segment", u.segment}});
    problems.push_back({{"key", p.key},
                        {"kind", p.kind},
                        {"detail", p.detail},
                        {"size", p.size},
                        {"uses", p.uses},
                        {"used_by", std::move(uses)}});
  }
  Json errs = Json::array();
  for (const auto& e : r.errors) errs.push_back({{"key", e.path}, {"error", e.error}});
  return Json{{"ok", r.ok()},
              {"target", target},
              {"deep", deep},
              {"segments", r.segments},
              {"entries", r.entries},
              {"first_seq", opt(r.first_seq)},
              {"last_seq", opt(r.last_seq)},
              {"chunks", r.chunks},
              {"chunk_bytes", r.chunk_bytes},
              {"bytes_hashed", r.bytes_hashed},
              {"problems", std::move(problems)},
              {"errors", std::move(errs)},
              {"seconds", r.seconds}};
}

void PrintHistoryHuman(const HistoryVerifyReport& r, const std::string& target, bool deep,
                       size_t limit) {
  printf("Target:  %s\n", EscapeControl(target).c_str());
  if (r.segments == 0 && r.errors.empty()) {
    printf("no history: the target holds no timeline segments\n");
    return;
  }
  printf("History: %llu segments (seqs %llu..%llu), %llu entries, %llu chunks (%s)\n",
         static_cast<unsigned long long>(r.segments),
         static_cast<unsigned long long>(r.first_seq.value_or(0)),
         static_cast<unsigned long long>(r.last_seq.value_or(0)),
         static_cast<unsigned long long>(r.entries), static_cast<unsigned long long>(r.chunks),
         FormatBytes(r.chunk_bytes).c_str());
  std::string how =
      deep ? "present with its size and SHA-256 (" + FormatBytes(r.bytes_hashed) + " read)"
           : "present with its size (--deep also checks its SHA-256)";
  if (r.ok()) {
    printf("OK: every chunk the history references is %s, in %s\n", how.c_str(),
           FormatDuration(r.seconds).c_str());
    return;
  }
  printf("%s: %zu chunks missing, of the wrong size or corrupt; %zu errors (%s)\n",
         r.problems.empty() ? "INCOMPLETE" : "DAMAGED", r.problems.size(), r.errors.size(),
         FormatDuration(r.seconds).c_str());
  size_t shown = limit == 0 ? r.problems.size() : std::min(limit, r.problems.size());
  for (size_t i = 0; i < shown; ++i) {
    const HistoryChunkProblem& p = r.problems[i];
    std::string users;
    for (const HistoryChunkUse& u : p.used_by)
      users += (users.empty() ? "" : ", ") + EscapeControl(u.path) + " (seq " +
               std::to_string(u.seq) + ")";
    if (p.uses > p.used_by.size())
      users += " and " + std::to_string(p.uses - p.used_by.size()) + " more";
    printf("%-8s %s: %s; needed by %s\n", p.kind.c_str(), p.key.c_str(),
           EscapeControl(p.detail).c_str(), users.c_str());
  }
  if (shown < r.problems.size())
    printf("... and %zu more chunks (--limit 0 or --json lists all)\n", r.problems.size() - shown);
  for (const auto& e : r.errors)
    printf("error    %s: %s\n", EscapeControl(e.path).c_str(), EscapeControl(e.error).c_str());
}

// --json of one target: printed, or kept in *collect (every target's).
void EmitJson(Json j, Json* collect) {
  if (collect) {
    *collect = std::move(j);
    return;
  }
  printf("%s\n", j.dump(-1, ' ', false, Json::error_handler_t::replace).c_str());
}

int RunVerifyHistory(const GlobalOptions& global, const VerifyOptions& options, Json* collect) {
  if (options.quick || !options.path.empty() || !options.dir.empty())
    return Fail(kExitUsage,
                "--history checks the target's history alone: it takes no --quick, "
                "--path or --dir");
  int code = kExitOk;
  auto target = ResolveTargetOrFail(global, options.target, &code);
  if (!target) return code;
  HistoryVerifyConfig config;
  config.deep = options.deep;
  config.workers = options.workers;
  auto report = VerifyHistory(target->store.get(), config);
  if (!report.ok()) return Fail(kExitFailure, "verify --history: " + report.status().message());
  if (global.json)
    EmitJson(HistoryToJson(*report, target->url, options.deep), collect);
  else
    PrintHistoryHuman(*report, target->url, options.deep, size_t(std::max(options.limit, 0)));
  if (int out = FinishOutput(); out != kExitOk) return out;
  if (!report->problems.empty()) return kExitDifferences;
  return report->errors.empty() ? kExitOk : kExitFailure;
}

// One target (options.target, or the journal's first). With --json and
// collect, the report goes to *collect instead of stdout.
int VerifyOne(const GlobalOptions& global, const VerifyOptions& options, Json* collect) {
  if (options.history) return RunVerifyHistory(global, options, collect);
  if (options.deep) return Fail(kExitUsage, "--deep goes with --history");
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
    EmitJson(ToJson(*report, target->url, dir, config), collect);
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

// The exit code of several targets' verifies: a failure (the first) over
// differences over ok.
int Worse(int a, int b) {
  if (a != kExitOk && a != kExitDifferences) return a;
  if (b != kExitOk && b != kExitDifferences) return b;
  return a == kExitDifferences || b == kExitDifferences ? kExitDifferences : kExitOk;
}

}  // namespace

int RunVerify(const GlobalOptions& global, const VerifyOptions& options) {
  // Several targets (issue 16): each one, unless --target names one.
  std::vector<std::string> names;
  if (options.target.target.empty()) names = JournalTargetNames(global);
  if (names.size() <= 1) return VerifyOne(global, options, nullptr);
  Json all = Json::array();
  int worst = kExitOk;
  for (const std::string& name : names) {
    VerifyOptions one = options;
    one.target.target = name;
    if (!global.json) {
      printf("%s== target %s ==\n", &name == &names.front() ? "" : "\n",
             EscapeControl(name).c_str());
      fflush(stdout);
    }
    Json j;
    int rc = VerifyOne(global, one, global.json ? &j : nullptr);
    if (global.json) {
      if (!j.is_object()) j = Json::object();  // it failed: the error went to stderr
      j["name"] = name;
      j["exit_code"] = rc;
      all.push_back(std::move(j));
    }
    worst = Worse(worst, rc);
  }
  if (global.json) EmitJson(Json{{"targets", std::move(all)}}, nullptr);
  if (int out = FinishOutput(); out != kExitOk) return out;
  return worst;
}

}  // namespace scribefs::ctl
