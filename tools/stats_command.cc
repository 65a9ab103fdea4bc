#include "tools/stats_command.h"

#include <algorithm>
#include <cstdio>
#include <string_view>
#include <vector>

#include "journal/record.h"
#include "journal/targets.h"
#include "tools/control_client.h"
#include "tools/control_commands.h"
#include "tools/human.h"
#include "tools/time_spec.h"

namespace scribefs::ctl {
namespace {

const std::string_view kStates[] = {kStatePending, kStateUploading, kStateDone, kStateFailed,
                                    kStateSkipped};

// The known names in their canonical order, then any others the journal holds.
std::vector<std::string> Ordered(const std::vector<std::string_view>& known,
                                 const std::map<std::string, int64_t>& present,
                                 bool include_absent_known) {
  std::vector<std::string> out;
  for (std::string_view k : known)
    if (include_absent_known || present.count(std::string(k))) out.emplace_back(k);
  for (const auto& [name, n] : present)
    if (std::find(known.begin(), known.end(), name) == known.end()) out.push_back(name);
  return out;
}

std::vector<std::string> StateColumns(const JournalStats& s) {
  return Ordered({std::begin(kStates), std::end(kStates)}, s.by_state, true);
}

double AgeSeconds(int64_t then_ns, int64_t now_ns) {
  return static_cast<double>(now_ns - then_ns) / 1e9;
}

int64_t Get(const std::map<std::string, int64_t>& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

void PrintTable(const JournalStats& s) {
  std::vector<std::string> states = StateColumns(s);
  std::vector<std::string> ops = Ordered(AllOpNames(), s.by_op, false);
  // Cells: header row, one row per op, then the total row.
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header = {"OP"};
  for (const std::string& st : states) header.push_back(EscapeControl(st));
  header.push_back("total");
  rows.push_back(header);
  static const std::map<std::string, int64_t> kNone;
  for (const std::string& op : ops) {
    auto it = s.by_op_state.find(op);
    const auto& cells = it == s.by_op_state.end() ? kNone : it->second;
    std::vector<std::string> row = {EscapeControl(op)};
    for (const std::string& st : states) row.push_back(std::to_string(Get(cells, st)));
    row.push_back(std::to_string(Get(s.by_op, op)));
    rows.push_back(row);
  }
  std::vector<std::string> total = {"total"};
  for (const std::string& st : states) total.push_back(std::to_string(Get(s.by_state, st)));
  total.push_back(std::to_string(s.records));
  rows.push_back(total);

  std::vector<size_t> widths(header.size(), 0);
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      size_t pad = widths[c] - row[c].size();
      if (c == 0)
        line += row[c] + std::string(pad, ' ');
      else
        line += "  " + std::string(pad, ' ') + row[c];  // numbers align right
    }
    puts(line.c_str());
  }
}

// What only a running daemon knows (its control socket's status): the
// upload rate, the queue, bounded lag and throttling. null when no daemon
// answers (not running, or not within 5 s).
nlohmann::ordered_json LiveFigures(const GlobalOptions& global) {
  StateLocation location;
  int code = kExitOk;
  auto client = ControlClient::Connect(global, &location, &code, /*quiet=*/true);
  if (!client) return nullptr;
  auto answer = client->Call({{"cmd", "status"}}, {}, 5000);
  if (!answer.ok() || !answer->is_object() || !answer->value("ok", false)) return nullptr;
  const nlohmann::json& a = *answer;
  nlohmann::ordered_json live;
  live["pid"] = a.value("pid", 0);
  if (a.contains("uploader") && a["uploader"].is_object()) {
    const nlohmann::json& u = a["uploader"];
    live["upload_rate_bps"] = u.value("upload_rate_bps", 0.0);
    live["queued_paths"] = u.value("queued_paths", uint64_t(0));
    live["in_flight"] = u.value("in_flight", uint64_t(0));
  } else {
    live["upload_rate_bps"] = nullptr;  // journal only: nothing is uploaded
  }
  live["lag"] = a.contains("lag") && a["lag"].is_object() ? a["lag"] : nullptr;
  return live;
}

void PrintLive(const nlohmann::ordered_json& live) {
  if (!live.is_object()) {
    printf("daemon:          no running daemon answered: no upload rate, lag or throttling\n"
           "                 to show (the figures above are the journal's)\n");
    return;
  }
  if (live["upload_rate_bps"].is_number()) {
    printf("upload rate:     %s/s over the last 10 s; %llu paths queued, %llu in flight\n",
           FormatBytes(static_cast<uint64_t>(live["upload_rate_bps"].get<double>())).c_str(),
           static_cast<unsigned long long>(live.value("queued_paths", uint64_t(0))),
           static_cast<unsigned long long>(live.value("in_flight", uint64_t(0))));
  }
  if (live["lag"].is_object())
    printf("lag:             %s\n", EscapeControl(LagLine(live["lag"])).c_str());
}

// The counters an uploader last noted (meta "uploader", or "uploader.ID" with
// several targets), as lines.
void PrintUploader(const nlohmann::ordered_json& uploader) {
  auto n = [&](const char* key) { return uploader.value(key, uint64_t(0)); };
  std::string causes;
  if (uploader.contains("retry_causes") && uploader["retry_causes"].is_object()) {
    for (const auto& [cause, v] : uploader["retry_causes"].items()) {
      if (!v.is_number_unsigned() || v.get<uint64_t>() == 0) continue;
      causes += (causes.empty() ? " (" : ", ") + cause + " " + std::to_string(v.get<uint64_t>());
    }
    if (!causes.empty()) causes += ")";
  }
  printf("uploader:        %llu uploads, %llu copies, %llu deletes, %s sent\n",
         static_cast<unsigned long long>(n("uploads")),
         static_cast<unsigned long long>(n("copies")),
         static_cast<unsigned long long>(n("deletes")), FormatBytes(n("bytes_sent")).c_str());
  printf("retries:         %llu%s; %llu failed for good\n",
         static_cast<unsigned long long>(n("retries")), causes.c_str(),
         static_cast<unsigned long long>(n("failures")));
  if (uploader.contains("bwlimit_bps")) {
    uint64_t bw = n("bwlimit_bps");
    printf("upload limit:    %s (when last noted; scribectl status shows it now)\n",
           bw ? (FormatBytes(bw) + "/s").c_str() : "off");
  }
  if (n("unstorable") > 0) {
    printf(
        "unstorable:      %llu paths skipped: the target cannot hold them (journal --state "
        "skipped)\n",
        static_cast<unsigned long long>(n("unstorable")));
  }
  std::string last_error = uploader.value("last_error", std::string());
  if (!last_error.empty()) printf("last error:      %s\n", EscapeControl(last_error).c_str());
}

// With several targets, each one's noted counters: [{name, url, uploader}]
// (uploader null before its first note); null with one target or none.
nlohmann::ordered_json TargetUploaders(JournalReader& reader) {
  auto targets = Targets::List(reader);
  if (!targets.ok() || targets->size() < 2) return nullptr;
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const TargetEntry& t : *targets) {
    nlohmann::ordered_json counters = nullptr;
    if (auto meta = reader.Meta("uploader." + std::to_string(t.id));
        meta.ok() && meta->has_value()) {
      counters = nlohmann::ordered_json::parse(**meta, nullptr, /*allow_exceptions=*/false);
      if (counters.is_discarded()) counters = nullptr;
    }
    out.push_back({{"name", t.name}, {"url", t.url}, {"uploader", counters}});
  }
  return out;
}

}  // namespace

nlohmann::ordered_json StatsToJson(const JournalStats& s, const std::string& journal,
                                   int64_t now_ns) {
  using Json = nlohmann::ordered_json;
  Json by_op = Json::object(), by_state = Json::object(), by_op_state = Json::object();
  for (const std::string& op : Ordered(AllOpNames(), s.by_op, false)) by_op[op] = Get(s.by_op, op);
  for (const std::string& st : StateColumns(s)) by_state[st] = Get(s.by_state, st);
  for (const std::string& op : Ordered(AllOpNames(), s.by_op, false)) {
    Json cells = Json::object();
    auto it = s.by_op_state.find(op);
    if (it != s.by_op_state.end())
      for (const std::string& st : StateColumns(s))
        if (int64_t n = Get(it->second, st)) cells[st] = n;
    by_op_state[op] = std::move(cells);
  }
  Json j;
  j["journal"] = journal;
  j["records"] = s.records;
  j["max_seq"] = s.max_seq;
  j["pending_records"] = s.pending_records;
  j["pending_files"] = s.pending_files;
  j["pending_bytes"] = s.pending_bytes;
  j["oldest_pending_ns"] = s.oldest_pending_ns ? Json(*s.oldest_pending_ns) : Json(nullptr);
  j["oldest_pending_age_s"] =
      s.oldest_pending_ns ? Json(AgeSeconds(*s.oldest_pending_ns, now_ns)) : Json(nullptr);
  j["by_op"] = std::move(by_op);
  j["by_state"] = std::move(by_state);
  j["by_op_state"] = std::move(by_op_state);
  return j;
}

int RunStats(const GlobalOptions& global) {
  StateLocation location;
  int exit_code = kExitOk;
  std::unique_ptr<JournalReader> reader = OpenJournalOrFail(global, &location, &exit_code);
  if (!reader) return exit_code;
  auto stats = reader->Stats();
  if (!stats.ok()) return Fail(kExitFailure, stats.status().message());
  const JournalStats& s = *stats;
  int64_t now = NowNs();
  const std::string journal = location.paths.journal();

  // The uploader's counters, as the daemon last noted them (absent without a
  // target, or before its first upload).
  nlohmann::ordered_json uploader = nullptr;
  if (auto meta = reader->Meta("uploader"); meta.ok() && meta->has_value()) {
    uploader = nlohmann::ordered_json::parse(**meta, nullptr, /*allow_exceptions=*/false);
    if (uploader.is_discarded()) uploader = nullptr;
  }

  // With several targets, "uploader" is not written: each one's counters.
  nlohmann::ordered_json uploaders = TargetUploaders(*reader);
  nlohmann::ordered_json live = LiveFigures(global);
  if (global.json) {
    nlohmann::ordered_json j = StatsToJson(s, journal, now);
    j["uploader"] = uploader;
    j["uploaders"] = uploaders;
    j["live"] = live;
    std::string line = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    puts(line.c_str());
    return FinishOutput();
  }

  printf("journal:         %s\n", EscapeControl(journal).c_str());
  printf("records:         %lld (max seq %lld)\n", static_cast<long long>(s.records),
         static_cast<long long>(s.max_seq));
  printf("pending:         %lld records, %lld files, %s (%lld bytes)\n",
         static_cast<long long>(s.pending_records), static_cast<long long>(s.pending_files),
         FormatBytes(static_cast<uint64_t>(std::max<int64_t>(s.pending_bytes, 0))).c_str(),
         static_cast<long long>(s.pending_bytes));
  if (s.oldest_pending_ns) {
    printf("oldest pending:  %s ago (%s)\n",
           FormatDuration(AgeSeconds(*s.oldest_pending_ns, now)).c_str(),
           FormatLocalTime(*s.oldest_pending_ns).c_str());
  } else {
    printf("oldest pending:  -\n");
  }
  int64_t failed = Get(s.by_state, std::string(kStateFailed));
  printf("failed:          %lld records%s\n", static_cast<long long>(failed),
         failed ? " (see: scribectl journal --state failed)" : "");
  if (uploader.is_object()) PrintUploader(uploader);
  if (uploaders.is_array()) {
    for (const auto& t : uploaders) {
      printf("target %s (%s):\n", EscapeControl(t.value("name", "")).c_str(),
             EscapeControl(t.value("url", "")).c_str());
      if (t["uploader"].is_object())
        PrintUploader(t["uploader"]);
      else
        printf("uploader:        nothing noted yet\n");
    }
  }
  PrintLive(live);
  if (s.records > 0) {
    putchar('\n');
    PrintTable(s);
  }
  return FinishOutput();
}

}  // namespace scribefs::ctl
