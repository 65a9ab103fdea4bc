#include "tools/control_commands.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "journal/reader.h"
#include "journal/record.h"
#include "journal/targets.h"
#include "tools/control_client.h"
#include "tools/human.h"
#include "tools/time_spec.h"

extern char** environ;

namespace scribefs::ctl {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

int PrintJson(const json& j) {
  std::string line = j.dump(-1, ' ', false, json::error_handler_t::replace);
  puts(line.c_str());
  return FinishOutput();
}

double Num(const json& j, const char* key, double def = 0) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : def;
}

std::string Str(const json& j, const char* key, const std::string& def = "") {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : def;
}

std::string Ms(double ms) {
  char buf[32];
  if (ms < 1000)
    snprintf(buf, sizeof buf, "%.1f ms", ms);
  else
    snprintf(buf, sizeof buf, "%.2f s", ms / 1000);
  return buf;
}

// Ctrl-C / SIGTERM during a long wait: noted, so that the wait can end
// cleanly (close the connection, run the post hook) instead of dying.
std::atomic<int> g_signal{0};
void OnSignal(int sig) { g_signal = sig; }

class SignalGuard {
 public:
  SignalGuard() {
    struct sigaction sa = {};
    sa.sa_handler = OnSignal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalGuard() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ = {}, old_term_ = {};
};

// A status line on stderr, rewritten in place; only on a terminal.
class Progress {
 public:
  Progress() : tty_(isatty(STDERR_FILENO) == 1) {}
  ~Progress() { Clear(); }
  void Show(const std::string& text) {
    if (!tty_) return;
    fprintf(stderr, "\r\033[K%s", text.c_str());
    fflush(stderr);
    shown_ = true;
  }
  void Clear() {
    if (tty_ && shown_) {
      fprintf(stderr, "\r\033[K");
      fflush(stderr);
      shown_ = false;
    }
  }
  bool tty() const { return tty_; }

 private:
  bool tty_;
  bool shown_ = false;
};

// Pending work as the journal sees it (for progress lines).
class PendingProbe {
 public:
  explicit PendingProbe(const StateLocation& loc) {
    auto r = JournalReader::Open(loc.paths.journal());
    if (r.ok()) reader_ = std::move(r.value());
  }
  std::string Describe() {
    if (!reader_) return "";
    auto s = reader_->Stats();
    if (!s.ok()) return "";
    return std::to_string(s->pending_records) + " records pending (" +
           FormatBytes(static_cast<uint64_t>(std::max<int64_t>(s->pending_bytes, 0))) + ")";
  }

 private:
  std::unique_ptr<JournalReader> reader_;
};

// Calls a long-running verb, showing progress and honouring Ctrl-C.
Result<json> LongCall(ControlClient& client, const json& req, const StateLocation& loc,
                      const std::string& what) {
  Progress progress;
  PendingProbe probe(loc);
  SignalGuard guard;
  g_signal = 0;
  auto start = Clock::now();
  auto last = start - std::chrono::seconds(1);
  auto r = client.Call(req, [&] {
    if (g_signal != 0) return false;
    auto now = Clock::now();
    if (progress.tty() && now - last >= std::chrono::milliseconds(500)) {
      last = now;
      double secs = std::chrono::duration<double>(now - start).count();
      std::string p = probe.Describe();
      progress.Show(what + ": " + (p.empty() ? "waiting" : p) + ", " + FormatDuration(secs));
    }
    return true;
  });
  progress.Clear();
  return r;
}

// Runs `sh -c command` with extra environment; stdout goes to our stderr so
// that --json output stays clean. Returns the exit status (128+signal).
int RunHook(const std::string& command, const std::map<std::string, std::string>& env) {
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    if (!env.count(kv.substr(0, kv.find('=')))) envs.push_back(kv);
  }
  for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : envs) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string sh = "/bin/sh", dash_c = "-c", cmd = command;
  char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
  pid_t pid;
  int rc = posix_spawn(&pid, "/bin/sh", &fa, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return 127;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return 127;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Connects, printing why not and setting *code on failure.
std::unique_ptr<ControlClient> ConnectOrFail(const GlobalOptions& g, StateLocation* loc,
                                             int* code) {
  return ControlClient::Connect(g, loc, code);
}

// One short request; prints the error and returns its exit code on failure.
int SimpleCall(ControlClient& client, const json& req, json* answer) {
  auto r = client.Call(req);
  if (!r.ok()) {
    int code = r.status().code() == ETIMEDOUT ? kExitTimeout : kExitFailure;
    return Fail(code, r.status().message());
  }
  *answer = std::move(r.value());
  if (!answer->value("ok", false)) return -1;  // caller reports
  return kExitOk;
}

int FailAnswer(const GlobalOptions& g, const json& answer) {
  if (g.json) (void)PrintJson(answer);
  return Fail(ExitCodeForAnswer(answer), AnswerError(answer));
}

json Without(json j, const char* key) {
  j.erase(key);
  return j;
}

// ---- status -------------------------------------------------------------------

// What each target the journal knows still lacks (issue 16): [{name, url,
// pending_records, failed_records, oldest_pending_age_s}]. With one target its figures are the
// journal's own (its state is the records' state), so only several cost a
// count each, bounded by the pending work as the others are.
Result<json> TargetsSummary(JournalReader& reader, const json& journal, int64_t max_seq) {
  auto targets = Targets::List(reader);
  if (!targets.ok()) return targets.status();
  json out = json::array();
  for (const TargetEntry& t : *targets) {
    json e = {{"name", t.name}, {"url", t.url}};
    if (targets->size() == 1) {
      e["pending_records"] = journal["pending_records"];
      e["failed_records"] = journal["failed_records"];
      e["oldest_pending_age_s"] = journal["oldest_pending_age_s"];
    } else {
      auto left = reader.UnfinishedThrough(max_seq, t.id);
      if (!left.ok()) return left.status();
      e["pending_records"] = left->pending;
      e["failed_records"] = left->failed;
      e["oldest_pending_age_s"] =
          left->oldest_pending_ns
              ? json(static_cast<double>(NowNs() - *left->oldest_pending_ns) / 1e9)
              : json(nullptr);
    }
    out.push_back(std::move(e));
  }
  return out;
}

json JournalSummary(const StateLocation& loc, std::string* error) {
  auto reader = JournalReader::Open(loc.paths.journal());
  if (!reader.ok()) {
    *error = reader.status().message();
    return nullptr;
  }
  auto s = reader.value()->Stats();
  if (!s.ok()) {
    *error = s.status().message();
    return nullptr;
  }
  json j;
  j["journal"] = loc.paths.journal();
  j["records"] = s->records;
  j["max_seq"] = s->max_seq;
  j["pending_records"] = s->pending_records;
  j["pending_files"] = s->pending_files;
  j["pending_bytes"] = s->pending_bytes;
  j["oldest_pending_ns"] = s->oldest_pending_ns ? json(*s->oldest_pending_ns) : json(nullptr);
  j["oldest_pending_age_s"] = s->oldest_pending_ns
                                  ? json(static_cast<double>(NowNs() - *s->oldest_pending_ns) / 1e9)
                                  : json(nullptr);
  auto f = s->by_state.find(std::string(kStateFailed));
  j["failed_records"] = f == s->by_state.end() ? 0 : f->second;
  auto targets = TargetsSummary(*reader.value(), j, s->max_seq);
  if (!targets.ok()) {
    *error = targets.status().message();
    return nullptr;
  }
  j["targets"] = std::move(*targets);
  JournalFilter cf;
  cf.op = std::string(OpName(Op::kCheckpoint));
  cf.limit = 1;
  cf.newest_first = true;
  j["last_checkpoint"] = nullptr;
  if (auto cps = reader.value()->Query(cf); cps.ok() && !cps->empty()) {
    const Record& r = cps->back();
    json d = json::parse(r.detail, nullptr, false);
    if (!d.is_object()) d = json::object();
    j["last_checkpoint"] = {
        {"name", Str(d, "name")},       {"seq", r.seq},
        {"time_ns", r.time_ns},         {"paths", d.value("paths", 0)},
        {"held_ms", Num(d, "held_ms")}, {"manifest_key", Str(d, "manifest_key")}};
  }
  return j;
}

// "upload limit 2.0 MiB/s (timetable 08:00,512K ...), sending 1.9 MiB/s" from
// the daemon's "bandwidth" object (daemon/verb_set.cc).
std::string BandwidthLine(const json& bw) {
  std::string limit = bw["limit_bps"].is_number()
                          ? FormatBytes(bw["limit_bps"].get<uint64_t>()) + "/s"
                          : std::string("off");
  std::string schedule = Str(bw, "schedule"), source = Str(bw, "source");
  std::string why;
  if (!schedule.empty())
    why = " (" + std::string(source == "set" ? "set at run time: " : "timetable ") + schedule + ")";
  else if (source == "set")
    why = " (set at run time)";
  return "upload limit " + limit + why + ", sending " +
         FormatBytes(static_cast<uint64_t>(Num(bw, "rate_bps"))) + "/s";
}

// Several targets: what each still lacks (scribectl journal --target NAME),
// one line each under "failed:".
void PrintTargetLines(const json& journal) {
  if (!journal["targets"].is_array() || journal["targets"].size() <= 1) return;
  for (const json& t : journal["targets"]) {
    std::string label = "  " + Str(t, "name") + ":";
    printf(
        "%-17s%s\n", EscapeControl(label).c_str(),
        EscapeControl(std::to_string(t.value("pending_records", int64_t(0))) + " records pending" +
                      (t["oldest_pending_age_s"].is_number()
                           ? " (oldest " + FormatDuration(Num(t, "oldest_pending_age_s")) + ")"
                           : std::string()) +
                      ", " + std::to_string(t.value("failed_records", int64_t(0))) + " failed (" +
                      Str(t, "url") + ")")
            .c_str());
  }
}

void PrintStatus(const StateLocation& loc, const json& daemon, const json& journal,
                 const std::string& journal_error) {
  auto line = [](const char* label, const std::string& value) {
    printf("%-17s%s\n", label, EscapeControl(value).c_str());
  };
  int64_t now = NowNs();
  if (daemon.is_object()) {
    std::string mp = Str(daemon, "mountpoint"), dd = Str(daemon, "datadir");
    line("mount:", dd + (mp == dd ? " (mounted over itself)" : " on " + mp) + ", running, pid " +
                       std::to_string(daemon.value("pid", 0)));
    line("mode:", Str(daemon, "mode"));
    line("target:", daemon["target"].is_string() ? daemon["target"].get<std::string>()
                                                 : "none (journal only)");
    if (daemon.contains("target_unreachable_since_ns"))  // the daemon's probe (target_probe.h)
      line("", "target unreachable since " +
                   FormatLocalTime(daemon.value("target_unreachable_since_ns", int64_t(0))) + ": " +
                   Str(daemon, "target_error"));
    const json& p = daemon["pause"];
    if (p.value("paused", false)) {
      double since = static_cast<double>(now - p.value("since_ns", int64_t(0))) / 1e9;
      double left = static_cast<double>(p.value("until_ns", int64_t(0)) - now) / 1e9;
      line("paused:", "yes, since " + FormatLocalTime(p.value("since_ns", int64_t(0))) + " (" +
                          FormatDuration(since) + ") by " + Str(p, "by") +
                          "; resumes by itself in " + FormatDuration(left) + "; " +
                          std::to_string(p.value("held_ops", 0)) + " operation(s) held");
    } else {
      std::string last;
      if (p.contains("last_resume")) {
        const json& r = p["last_resume"];
        last = " (last pause held writes " + Ms(Num(r, "held_ms")) + ", ended by " +
               Str(r, "reason") + ")";
      }
      line("paused:", "no" + last);
    }
    if (!daemon.value("journal_ok", true))
      line("journal error:", Str(daemon, "journal_error") + " (mutations fail with EIO)");
    if (daemon["uploader"].is_object()) {
      const json& u = daemon["uploader"];
      line("uploads:", FormatBytes(static_cast<uint64_t>(Num(u, "upload_rate_bps"))) +
                           "/s over the last 10 s; " + std::to_string(u.value("uploads", 0)) +
                           " uploads, " + std::to_string(u.value("copies", 0)) + " copies, " +
                           std::to_string(u.value("deletes", 0)) + " deletes, " +
                           FormatBytes(u.value("bytes_sent", uint64_t(0))) + " sent since start");
      uint64_t retries = u.value("retries", uint64_t(0)),
               failures = u.value("failures", uint64_t(0));
      if (retries > 0 || failures > 0) {
        std::string causes;
        if (u.contains("retry_causes") && u["retry_causes"].is_object()) {
          for (const auto& [cause, n] : u["retry_causes"].items()) {
            if (!n.is_number_unsigned() || n.get<uint64_t>() == 0) continue;
            causes +=
                (causes.empty() ? " (" : ", ") + cause + " " + std::to_string(n.get<uint64_t>());
          }
          if (!causes.empty()) causes += ")";
        }
        line("retries:", std::to_string(retries) + causes + "; " + std::to_string(failures) +
                             " failed for good");
      }
      if (!Str(u, "last_error").empty()) line("last error:", Str(u, "last_error"));
    }
    if (daemon["bandwidth"].is_object()) line("bandwidth:", BandwidthLine(daemon["bandwidth"]));
    if (daemon.contains("lag") && daemon["lag"].is_object()) {
      line("lag:", LagLine(daemon["lag"]));
      // Several bounded targets: one line each.
      if (daemon["lag"].contains("targets") && daemon["lag"]["targets"].is_array())
        for (const json& t : daemon["lag"]["targets"])
          line(("  " + EscapeControl(Str(t, "name")) + ":").c_str(), LagLine(t));
    }
    if (daemon.contains("history") && daemon["history"].is_object() && daemon["target"].is_string())
      line("history:", HistoryLine(daemon["history"],
                                   journal.is_object() ? journal.value("max_seq", int64_t(0)) : 0));
    if (daemon.contains("checkpoints_captured") && daemon["checkpoints_captured"].is_array())
      for (const json& c : daemon["checkpoints_captured"])
        line("captured:", "checkpoint " + Str(c, "name") + " at journal seq " +
                              std::to_string(c.value("seq", int64_t(0))) + ", " +
                              std::to_string(c.value("frozen", 0)) + " paths frozen, spool " +
                              FormatBytes(c.value("spool_bytes", uint64_t(0))) +
                              "; being stored");
  } else {
    line("mount:",
         (loc.datadir.empty() ? loc.paths.dir : loc.datadir) + ": scribefs is not running");
  }
  // A journal-only mount uploads nothing: its records are not "pending" in
  // any sense a person should worry about, and their age means nothing.
  bool no_target = daemon.is_object() && !daemon["target"].is_string();
  if (journal.is_object() && no_target) {
    line("pending:", "nothing to upload: no target (journal only); " +
                         std::to_string(journal.value("records", 0)) + " records in the journal");
  }
  if (journal.is_object()) {
    std::string pend = std::to_string(journal.value("pending_records", 0)) + " records, " +
                       std::to_string(journal.value("pending_files", 0)) + " files, " +
                       FormatBytes(static_cast<uint64_t>(
                           std::max<int64_t>(journal.value("pending_bytes", int64_t(0)), 0)));
    if (journal["oldest_pending_age_s"].is_number())
      pend += "; oldest " + FormatDuration(Num(journal, "oldest_pending_age_s")) + " ago";
    if (!no_target) line("pending:", pend);
    int64_t failed = journal.value("failed_records", int64_t(0));
    line("failed:", std::to_string(failed) + " records" +
                        (failed ? " (scribectl journal --state failed; scribectl retry)" : ""));
    PrintTargetLines(journal);
    const json& c = journal["last_checkpoint"];
    if (c.is_object()) {
      line("last checkpoint:", Str(c, "name") + " at " +
                                   FormatLocalTime(c.value("time_ns", int64_t(0))) +
                                   " (journal seq " + std::to_string(c.value("seq", 0)) + ", " +
                                   std::to_string(c.value("paths", 0)) + " paths, writes held " +
                                   Ms(Num(c, "held_ms")) + ")");
    } else {
      line("last checkpoint:", "none");
    }
    line("journal:", Str(journal, "journal"));
  } else {
    line("journal:", "unreadable: " + journal_error);
  }
}

}  // namespace

// History in the target in one line: "stored through record 1234 (5 records
// to go); 12 segments, 40 chunks (3.1 MiB) uploaded, 7 already stored since
// start".
std::string HistoryLine(const json& h, int64_t last_seq) {
  if (!h.value("enabled", false)) return "off (--history off)";
  std::string out;
  if (!h.value("loaded", false)) {
    out = "reading the target's timeline";
  } else {
    int64_t through = h.value("stored_through_seq", int64_t(0));
    out = "stored through record " + std::to_string(through);
    if (last_seq > through) out += " (" + std::to_string(last_seq - through) + " records to go)";
    out += "; " + std::to_string(h.value("segments_written", uint64_t(0))) + " segments, " +
           std::to_string(h.value("chunks_uploaded", uint64_t(0))) + " chunks (" +
           FormatBytes(h.value("chunk_bytes_uploaded", uint64_t(0))) + ") uploaded, " +
           std::to_string(h.value("chunks_already_stored", uint64_t(0))) +
           " already stored since start";
  }
  if (!Str(h, "last_error").empty()) out += "; last error: " + Str(h, "last_error");
  return out;
}

// Bounded lag in one line: "1.2 s, 6.5 MiB not stored (bounds 2 s, 8.0 MiB);
// writers held since 12:00:01: pending 9.1 MiB > 8.0 MiB".
std::string LagLine(const json& l) {
  std::string out = FormatDuration(Num(l, "oldest_pending_s"));
  // What --max-lag bounds: the age the last queued change will have.
  if (Num(l, "expected_lag_s") > Num(l, "oldest_pending_s"))
    out += " (" + FormatDuration(Num(l, "expected_lag_s")) + " when the queue is stored)";
  out += ", " + FormatBytes(l.value("pending_bytes", uint64_t(0))) + " not stored";
  auto is_num = [&](const char* k) { return l.contains(k) && l[k].is_number(); };
  std::string bounds;
  if (is_num("max_lag_s")) bounds = FormatDuration(Num(l, "max_lag_s"));
  if (is_num("max_pending_bytes"))
    bounds += (bounds.empty() ? "" : ", ") + FormatBytes(l.value("max_pending_bytes", uint64_t(0)));
  if (bounds.empty()) return out + " (no bound)";
  out += " (bound " + bounds + ")";
  std::string t = Str(l, "throttle");
  if (t == "none" || t.empty()) return out + "; writers not throttled";
  out += "; writers " + t;
  if (int64_t since = l.value("throttled_since_ns", int64_t(0)); since > 0)
    out += " since " + FormatLocalTime(since);
  if (t == "held") out += " (" + std::to_string(l.value("held_ops", 0)) + " operation(s))";
  return out + ": " + Str(l, "reason");
}

int RunStatus(const GlobalOptions& global) {
  StateLocation loc;
  int code = kExitOk;
  auto client = ControlClient::Connect(global, &loc, &code, /*quiet=*/true);
  if (!client && code != kExitNoDaemon) {
    client = ControlClient::Connect(global, &loc, &code);  // again, to print why
    if (!client) return code;
  }
  json daemon = nullptr;
  if (client) {
    json answer;
    int rc = SimpleCall(*client, {{"cmd", "status"}}, &answer);
    if (rc > 0) return rc;
    if (rc < 0) return FailAnswer(global, answer);
    daemon = Without(answer, "ok");
  }
  std::string journal_error;
  json journal = JournalSummary(loc, &journal_error);
  if (global.json) {
    json j;
    j["running"] = daemon.is_object();
    j["daemon"] = daemon;
    j["journal"] = journal;
    if (!journal.is_object()) j["journal_error"] = journal_error;
    int rc = PrintJson(j);
    if (rc != kExitOk) return rc;
  } else {
    PrintStatus(loc, daemon, journal, journal_error);
    if (int rc = FinishOutput(); rc != kExitOk) return rc;
  }
  if (!daemon.is_object())
    return Fail(kExitNoDaemon, "scribefs is not running for " +
                                   (loc.datadir.empty() ? loc.paths.dir : loc.datadir));
  return kExitOk;
}

int RunPause(const GlobalOptions& global, const PauseOptions& options) {
  StateLocation loc;
  int code;
  auto client = ConnectOrFail(global, &loc, &code);
  if (!client) return code;
  json req = {{"cmd", "pause"}, {"timeout_s", options.timeout_s}};
  if (options.sync) req["sync"] = true;
  json answer;
  int rc = SimpleCall(*client, req, &answer);
  if (rc > 0) return rc;
  if (rc < 0) return FailAnswer(global, answer);
  if (global.json) return PrintJson(answer);
  printf("paused (journal seq %lld): mutations wait until 'scribectl resume' or for at most %s\n",
         static_cast<long long>(answer.value("seq", int64_t(0))),
         FormatDuration(Num(answer, "timeout_s")).c_str());
  printf("drained in-flight operations in %s", Ms(Num(answer, "drain_ms")).c_str());
  if (answer["sync_ms"].is_number())
    printf(", synced DATADIR in %s", Ms(Num(answer, "sync_ms")).c_str());
  printf("\n");
  if (!answer.value("writeback_complete", true))
    printf("warning: cached writes were still being written back when the pause began\n");
  return FinishOutput();
}

int RunResume(const GlobalOptions& global) {
  StateLocation loc;
  int code;
  auto client = ConnectOrFail(global, &loc, &code);
  if (!client) return code;
  json answer;
  int rc = SimpleCall(*client, {{"cmd", "resume"}}, &answer);
  if (rc > 0) return rc;
  if (rc < 0) {
    if (answer.value("code", "") == "not_paused") {
      if (global.json) (void)PrintJson(answer);
      return Fail(kExitFailure,
                  "not paused (a pause ends by itself after its timeout; see "
                  "'scribectl journal --op resume')");
    }
    return FailAnswer(global, answer);
  }
  if (global.json) return PrintJson(answer);
  printf("resumed after %s; %lld held operation(s) proceed (journal seq %lld)\n",
         Ms(Num(answer, "held_ms")).c_str(), static_cast<long long>(answer.value("held_ops", 0)),
         static_cast<long long>(answer.value("seq", int64_t(0))));
  return FinishOutput();
}

int RunCheckpoint(const GlobalOptions& global, const CheckpointOptions& options) {
  StateLocation loc;
  int code;
  // The daemon must be there before any hook runs.
  {
    auto probe = ConnectOrFail(global, &loc, &code);
    if (!probe) return code;
  }
  json out = {{"ok", false}, {"name", options.name}};
  std::map<std::string, std::string> env = {{"SCRIBEFS_CHECKPOINT", options.name},
                                            {"SCRIBEFS_STATE_DIR", loc.paths.dir}};
  if (!loc.datadir.empty()) env["SCRIBEFS_DATADIR"] = loc.datadir;

  int exit_code = kExitOk;
  std::string error;
  bool attempted = true;
  if (options.pre) {
    env["SCRIBEFS_HOOK"] = "pre";
    int pre = RunHook(*options.pre, env);
    out["pre_exit"] = pre;
    if (pre != 0) {
      attempted = false;
      exit_code = kExitFailure;
      error = "the --pre hook failed (exit " + std::to_string(pre) + "); no checkpoint taken";
    }
  }
  json answer = nullptr;
  if (attempted) {
    auto client = ConnectOrFail(global, &loc, &code);
    if (!client) {
      exit_code = code;
      error = "cannot reach the daemon";
    } else {
      json req = {{"cmd", "checkpoint"},
                  {"name", options.name},
                  {"timeout_s", options.timeout_s},
                  {"wait", options.wait}};
      auto r = LongCall(*client, req, loc, "checkpoint " + options.name);
      if (!r.ok()) {
        exit_code = r.status().code() == ECANCELED ? 128 + (g_signal ? g_signal.load() : SIGINT)
                                                   : kExitFailure;
        error = r.status().code() == ECANCELED ? "interrupted; the daemon cancels the checkpoint"
                                               : r.status().message();
      } else {
        answer = std::move(r.value());
        if (!answer.value("ok", false)) {
          exit_code = ExitCodeForAnswer(answer);
          error = AnswerError(answer);
        }
      }
    }
  }
  if (options.post) {
    env["SCRIBEFS_HOOK"] = "post";
    env["SCRIBEFS_CHECKPOINT_RESULT"] = exit_code == kExitOk ? "ok" : "failed";
    int post = RunHook(*options.post, env);
    out["post_exit"] = post;
    if (post != 0 && exit_code == kExitOk) {
      exit_code = kExitFailure;
      error = "checkpoint " + options.name + " was taken, but the --post hook failed (exit " +
              std::to_string(post) + ")";
    }
  }
  if (answer.is_object()) {
    for (auto& [k, v] : answer.items())
      if (k != "ok") out[k] = v;
  }
  out["ok"] = exit_code == kExitOk;
  if (!error.empty()) out["error"] = error;
  if (global.json) {
    if (int rc = PrintJson(out); rc != kExitOk && exit_code == kExitOk) return rc;
  } else if (answer.is_object() && answer.value("ok", false) &&
             Str(answer, "state") == "captured") {
    printf("checkpoint %s: captured at journal seq %lld (%lld paths frozen); being stored as %s\n",
           options.name.c_str(), static_cast<long long>(answer.value("seq", int64_t(0))),
           static_cast<long long>(answer.value("frozen", 0)),
           EscapeControl(Str(answer, "target") + "/" + Str(answer, "manifest_key")).c_str());
    printf("writes held %s (drain %s); see 'scribectl checkpoints', or --wait\n",
           Ms(Num(answer, "held_ms")).c_str(), Ms(Num(answer, "drain_ms")).c_str());
    if (int rc = FinishOutput(); rc != kExitOk && exit_code == kExitOk) return rc;
  } else if (answer.is_object() && answer.value("ok", false)) {
    printf("checkpoint %s: %lld paths at journal seq %lld, manifest %s\n", options.name.c_str(),
           static_cast<long long>(answer.value("paths", 0)),
           static_cast<long long>(answer.value("seq", int64_t(0))),
           EscapeControl(Str(answer, "target") + "/" + Str(answer, "manifest_key")).c_str());
    printf("writes held %s (drain %s, uploads %s, manifest %s)\n",
           Ms(Num(answer, "held_ms")).c_str(), Ms(Num(answer, "drain_ms")).c_str(),
           Ms(Num(answer, "upload_wait_ms")).c_str(), Ms(Num(answer, "manifest_ms")).c_str());
    if (int rc = FinishOutput(); rc != kExitOk && exit_code == kExitOk) return rc;
  }
  if (exit_code != kExitOk) return Fail(exit_code, error);
  return kExitOk;
}

// One row of `checkpoints` per stored checkpoint the journal recorded
// (what the daemon answers too when it runs).
static json StoredCheckpointState(const json& e) {
  return {{"name", Str(e, "name")},
          {"state", "stored"},
          {"seq", e.value("pause_seq", int64_t{0})},
          {"captured_ns", e.value("time_ns", int64_t{0})},
          {"stored_ns", e.value("time_ns", int64_t{0})},
          {"held_ms", e.contains("held_ms") ? e["held_ms"] : json(0)},
          {"frozen", 0},
          {"spool_bytes", 0},
          {"error", nullptr}};
}

static void PrintCheckpointsTable(const json& states, const json& target,
                                  const std::string& target_error) {
  std::map<std::string, bool> in_target;
  if (target.is_array())
    for (const json& e : target) in_target[Str(e, "name")] = true;
  // Several targets (issue 16): which have each checkpoint's manifest.
  bool several = false;
  for (const json& e : states)
    several = several ||
              (e.contains("targets") && e["targets"].is_array() && e["targets"].size() > 1) ||
              (e.contains("stored_on") && e["stored_on"].is_array() && e["stored_on"].size() > 1);
  printf("%-24s %-8s %-23s %8s %10s %7s %10s  %s%s\n", "NAME", "STATE", "CAPTURED", "SEQ", "HELD",
         "FROZEN", "SPOOL", several ? "IN FIRST TARGET" : "IN TARGET",
         several ? "  STORED ON" : "");
  std::vector<std::string> errors;
  std::set<std::string> listed;
  for (const json& e : states) {
    std::string n = Str(e, "name");
    listed.insert(n);
    std::string tgt = target.is_array() ? (in_target[n] ? "yes" : "NO") : "?";
    if (Str(e, "state") != "stored" && target.is_array() && !in_target[n]) tgt = "-";
    std::string on;
    if (several) {
      std::vector<std::string> names;
      if (e.contains("stored_on") && e["stored_on"].is_array())
        for (const json& t : e["stored_on"])
          if (t.is_string()) names.push_back(t.get<std::string>());
      on = "  " + (names.empty() ? std::string("-") : fmt::format("{}", fmt::join(names, ",")));
    }
    if (several) tgt.resize(std::max<size_t>(tgt.size(), 15), ' ');
    printf("%-24s %-8s %-23s %8lld %10s %7lld %10s  %s%s\n", EscapeControl(n).c_str(),
           Str(e, "state").c_str(), FormatLocalTime(e.value("captured_ns", int64_t(0))).c_str(),
           static_cast<long long>(e.value("seq", int64_t(0))), Ms(Num(e, "held_ms")).c_str(),
           static_cast<long long>(e.value("frozen", int64_t(0))),
           FormatBytes(e.value("spool_bytes", uint64_t(0))).c_str(), tgt.c_str(),
           EscapeControl(on).c_str());
    if (Str(e, "state") == "failed") errors.push_back(n + ": " + Str(e, "error"));
  }
  if (target.is_array())
    for (const auto& [n, yes] : in_target)
      if (!listed.count(n))
        printf("%-24s %-8s %-23s %8s %10s %7s %10s  %s\n", EscapeControl(n).c_str(), "-",
               "(not in journal)", "-", "-", "-", "-", "yes");
  if (states.empty() && in_target.empty()) printf("(no checkpoints)\n");
  for (const std::string& e : errors) printf("failed %s\n", EscapeControl(e).c_str());
  if (!target_error.empty()) printf("target: %s\n", EscapeControl(target_error).c_str());
}

int RunCheckpoints(const GlobalOptions& global) {
  StateLocation loc;
  int code = kExitOk;
  auto client = ControlClient::Connect(global, &loc, &code, /*quiet=*/true);
  if (!client && code != kExitNoDaemon) {
    client = ControlClient::Connect(global, &loc, &code);
    if (!client) return code;
  }
  json journal = json::array(), target = nullptr, states = json::array();
  std::string target_error;
  if (client) {
    json answer;
    int rc = SimpleCall(*client, {{"cmd", "checkpoints"}}, &answer);
    if (rc > 0) return rc;
    if (rc < 0) return FailAnswer(global, answer);
    journal = answer["journal"];
    target = answer["target"];
    target_error = Str(answer, "target_error");
    if (answer.contains("checkpoints")) {
      states = answer["checkpoints"];
    } else {
      for (const json& e : journal) states.push_back(StoredCheckpointState(e));
    }
  } else {
    // The journal part does not need the daemon.
    int jcode;
    StateLocation l2;
    auto reader = OpenJournalOrFail(global, &l2, &jcode);
    if (!reader) return jcode;
    JournalFilter f;
    f.op = std::string(OpName(Op::kCheckpoint));
    auto recs = reader->Query(f);
    if (!recs.ok()) return Fail(kExitFailure, recs.status().message());
    std::map<std::string, size_t> by_name;  // one record per target (issue 16): one state
    for (const Record& r : *recs) {
      json d = json::parse(r.detail, nullptr, false);
      if (!d.is_object()) d = json::object();
      json e = {{"name", Str(d, "name")}, {"seq", r.seq}, {"time_ns", r.time_ns}};
      for (const char* k :
           {"pause_seq", "manifest_key", "paths", "held_ms", "target", "target_name"})
        if (d.contains(k)) e[k] = d[k];
      journal.push_back(e);
      if (auto it = by_name.find(Str(d, "name")); it != by_name.end()) {
        if (d.contains("target_name")) states[it->second]["stored_on"].push_back(d["target_name"]);
        continue;
      }
      by_name[Str(d, "name")] = states.size();
      json st = StoredCheckpointState(e);
      st["stored_on"] = json::array();
      if (d.contains("target_name")) st["stored_on"].push_back(d["target_name"]);
      if (d.contains("captured_ns")) st["captured_ns"] = d["captured_ns"];
      if (d.contains("frozen")) st["frozen"] = d["frozen"];
      states.push_back(st);
    }
    target_error = "scribefs is not running: the target was not asked";
  }
  if (global.json) {
    json j = {{"checkpoints", states}, {"journal", journal}, {"target", target}};
    if (!target_error.empty()) j["target_error"] = target_error;
    if (int rc = PrintJson(j); rc != kExitOk) return rc;
  } else {
    PrintCheckpointsTable(states, target, target_error);
    if (int rc = FinishOutput(); rc != kExitOk) return rc;
  }
  if (!client)
    return Fail(kExitNoDaemon, "scribefs is not running for " +
                                   (loc.datadir.empty() ? loc.paths.dir : loc.datadir) +
                                   "; listed the journal only");
  return kExitOk;
}

// Runs a verb that may take long ({"cmd":cmd,"timeout_s":...}: flush,
// rescan) with progress on a terminal. kExitOk with the daemon's ok answer
// in *answer; otherwise the exit code, the error printed.
static int RunLongVerb(const GlobalOptions& global, const std::string& cmd,
                       std::optional<double> timeout_s, json* answer) {
  StateLocation loc;
  int code;
  auto client = ConnectOrFail(global, &loc, &code);
  if (!client) return code;
  json req = {{"cmd", cmd}, {"timeout_s", timeout_s.value_or(7 * 86400.0)}};
  auto r = LongCall(*client, req, loc, cmd);
  if (!r.ok()) {
    if (r.status().code() == ECANCELED) return Fail(128 + g_signal.load(), "interrupted");
    return Fail(kExitFailure, r.status().message());
  }
  *answer = std::move(r.value());
  if (!answer->value("ok", false)) return FailAnswer(global, *answer);
  return kExitOk;
}

int RunFlush(const GlobalOptions& global, const FlushOptions& options) {
  json answer;
  if (int rc = RunLongVerb(global, "flush", options.timeout_s, &answer); rc != kExitOk) return rc;
  if (global.json) return PrintJson(answer);
  printf("flushed: everything up to journal seq %lld is in the target (waited %s)\n",
         static_cast<long long>(answer.value("seq", int64_t(0))),
         Ms(Num(answer, "waited_ms")).c_str());
  return FinishOutput();
}

int RunRetry(const GlobalOptions& global) {
  StateLocation loc;
  int code;
  auto client = ConnectOrFail(global, &loc, &code);
  if (!client) return code;
  json answer;
  int rc = SimpleCall(*client, {{"cmd", "retry"}}, &answer);
  if (rc > 0) return rc;
  if (rc < 0) return FailAnswer(global, answer);
  if (global.json) return PrintJson(answer);
  printf("requeued %lld failed record(s)\n", static_cast<long long>(answer.value("requeued", 0)));
  return FinishOutput();
}

int RunRescan(const GlobalOptions& global, const RescanOptions& options) {
  json answer;
  if (int rc = RunLongVerb(global, "rescan", options.timeout_s, &answer); rc != kExitOk) return rc;
  if (global.json) return PrintJson(answer);
  auto n = [&](const char* k) { return static_cast<long long>(answer.value(k, int64_t(0))); };
  printf("rescan: %lld entries in %s: %lld new, %lld changed, %lld missing", n("scanned"),
         FormatDuration(Num(answer, "seconds")).c_str(), n("new"), n("changed"), n("missing"));
  if (n("pending") > 0) printf(" (%lld more already pending)", n("pending"));
  printf("; writes held %s\n", Ms(Num(answer, "hold_ms")).c_str());
  if (n("records") > 0)
    printf("journaled %lld reconcile record(s); 'scribectl flush' waits for their upload\n",
           n("records"));
  return FinishOutput();
}

int RunSet(const GlobalOptions& global, const SetOptions& options) {
  StateLocation loc;
  int code;
  auto client = ConnectOrFail(global, &loc, &code);
  if (!client) return code;
  json answer;
  int rc = SimpleCall(*client, {{"cmd", "set"}, {"key", options.key}, {"value", options.value}},
                      &answer);
  if (rc > 0) return rc;
  if (rc < 0) return FailAnswer(global, answer);
  if (global.json) return PrintJson(answer);
  printf("%s set to %s until restart", EscapeControl(options.key).c_str(),
         EscapeControl(options.value).c_str());
  if (answer["bandwidth"].is_object()) printf(": %s", BandwidthLine(answer["bandwidth"]).c_str());
  printf("\n");
  return FinishOutput();
}

}  // namespace scribefs::ctl
