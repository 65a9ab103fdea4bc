#include "tools/journal_command.h"

#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <vector>

#include "journal/trim.h"
#include "tools/human.h"
#include "tools/time_spec.h"

namespace scribefs::ctl {
namespace {

// Rows fetched per query when listing without --limit, so that a large
// journal streams instead of being loaded whole.
constexpr int64_t kPageSize = 2000;
// With --path, a page can be a search of the glob's range in the path index,
// which reads the whole range (up to 100,000 records) for each page: fewer,
// larger pages.
constexpr int64_t kPathPageSize = 20000;
constexpr long kFollowPollNs = 200'000'000;
constexpr size_t kMaxPathColumn = 48;

volatile sig_atomic_t g_stop = 0;
void OnStopSignal(int) { g_stop = 1; }

bool IsControlOp(Op op) { return op == Op::kPause || op == Op::kResume || op == Op::kCheckpoint; }

std::string JoinOpNames() {
  std::string out;
  for (std::string_view name : AllOpNames()) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

// Display width of UTF-8 text, counting code points (good enough for paths).
size_t DisplayWidth(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

void AppendPadded(std::string* line, std::string_view cell, size_t width, bool right) {
  size_t w = DisplayWidth(cell);
  size_t pad = w < width ? width - w : 0;
  if (right) line->append(pad, ' ');
  line->append(cell);
  if (!right) line->append(pad, ' ');
  line->append("  ");
}

std::string OctalMode(uint32_t mode) {
  char buf[16];
  snprintf(buf, sizeof buf, "%04o", mode & 07777);
  return buf;
}

const char* SpecialFileType(uint32_t mode) {
  if (S_ISFIFO(mode)) return "fifo";
  if (S_ISCHR(mode)) return "char-device";
  if (S_ISBLK(mode)) return "block-device";
  if (S_ISSOCK(mode)) return "socket";
  return nullptr;
}

// Detail keys the filesystem uses for timestamps in ns since the epoch.
bool IsTimeKey(std::string_view key) {
  return key == "atime" || key == "mtime" || key == "ctime" || key.ends_with("time_ns");
}

std::string RenameFlags(int64_t flags) {
  // Linux renameat2 flags; the values are ABI.
  static const struct {
    int64_t bit;
    const char* name;
  } kFlags[] = {{1, "noreplace"}, {2, "exchange"}, {4, "whiteout"}};
  std::string out;
  for (const auto& f : kFlags) {
    if (flags & f.bit) {
      if (!out.empty()) out += '|';
      out += f.name;
      flags &= ~f.bit;
    }
  }
  if (flags) {
    if (!out.empty()) out += '|';
    char buf[32];
    snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(flags));
    out += buf;
  }
  return out;
}

// The table for people. Column widths come from the first rows printed;
// later rows (--follow) may be wider and then push the row out.
class RecordTable {
 public:
  // follow: rows will come later, so leave room for typical ones.
  void Size(const std::vector<Record>& rows, int64_t max_seq, bool follow) {
    seq_w_ = std::max(seq_w_, std::to_string(max_seq).size() + (follow ? 1 : 0));
    if (follow) {
      for (std::string_view name : AllOpNames()) op_w_ = std::max(op_w_, name.size());
      state_w_ = std::max<size_t>(state_w_, 9);
      path_w_ = std::max<size_t>(path_w_, 24);
    }
    for (const Record& r : rows) {
      op_w_ = std::max(op_w_, OpName(r.op).size());
      state_w_ = std::max(state_w_, DisplayWidth(r.state));
      path_w_ = std::max(path_w_, std::min(kMaxPathColumn, DisplayWidth(DisplayPath(r))));
    }
  }

  void Print(const Record& r) {
    if (!header_printed_) {
      PrintRow("SEQ", "TIME", "OP", "STATE", "PATH", "DETAIL");
      header_printed_ = true;
    }
    PrintRow(std::to_string(r.seq), FormatLocalTime(r.time_ns), OpName(r.op),
             EscapeControl(r.state), DisplayPath(r), DescribeRecord(r));
  }

 private:
  void PrintRow(std::string_view seq, std::string_view time, std::string_view op,
                std::string_view state, std::string_view path, std::string_view detail) {
    std::string line;
    AppendPadded(&line, seq, seq_w_, /*right=*/true);
    AppendPadded(&line, time, kTimeWidth, false);
    AppendPadded(&line, op, op_w_, false);
    AppendPadded(&line, state, state_w_, false);
    AppendPadded(&line, path, path_w_, false);
    line.append(detail);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    line += '\n';
    fputs(line.c_str(), stdout);
  }

  static constexpr size_t kTimeWidth = 23;  // 2026-11-21 10:00:00.123
  size_t seq_w_ = 3, op_w_ = 2, state_w_ = 5, path_w_ = 4;
  bool header_printed_ = false;
};

class Printer {
 public:
  Printer(bool json, bool follow) : json_(json), follow_(follow) {}
  void Size(const std::vector<Record>& rows, int64_t max_seq) {
    if (!json_) table_.Size(rows, max_seq, follow_);
  }
  void Print(const Record& r) {
    if (json_) {
      std::string line =
          RecordToJson(r).dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
      line += '\n';
      fputs(line.c_str(), stdout);
    } else {
      table_.Print(r);
    }
  }

 private:
  bool json_;
  bool follow_;
  RecordTable table_;
};

// Prints every record matching filter with seq in [from_seq, to_seq], page
// by page. Returns the number printed, or an error.
Result<int64_t> PrintRange(JournalReader* reader, JournalFilter filter, int64_t from_seq,
                           int64_t to_seq, Printer* printer, bool size_first_page) {
  filter.since_seq = std::max(filter.since_seq.value_or(0), from_seq);
  filter.until_seq = std::min(filter.until_seq.value_or(to_seq), to_seq);
  const int64_t page = filter.path_glob ? kPathPageSize : kPageSize;
  filter.limit = page;
  filter.newest_first = false;
  int64_t printed = 0;
  while (*filter.since_seq <= *filter.until_seq) {
    auto rows = reader->Query(filter);
    if (!rows.ok()) return rows.status();
    if (size_first_page && printed == 0) printer->Size(*rows, to_seq);
    for (const Record& r : *rows) printer->Print(r);
    printed += static_cast<int64_t>(rows->size());
    if (static_cast<int64_t>(rows->size()) < page) break;
    filter.since_seq = rows->back().seq + 1;
  }
  return printed;
}

void InstallStopHandlers() {
  struct sigaction sa = {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // nanosleep is interrupted regardless
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// Issue 11, item 5: the daemon deletes done records once the target's history
// holds them (journal/trim.h). When the listing asked reaches back to them,
// say so: an empty or short answer must not read as "nothing happened".
// The note is due when --since names a point at or before the trim, or,
// without --since, unless --limit filled its page with newer records
// (cut_by_limit): the listing then did not reach back to the start.
Result<std::optional<std::string>> TrimNote(JournalReader* reader, const JournalFilter& filter,
                                            bool cut_by_limit) {
  auto through = reader->Meta(kMetaTrimmedThrough);
  if (!through.ok()) return through.status();
  std::optional<int64_t> seq = ParseMetaInt(*through);
  if (!seq) return std::optional<std::string>();
  auto ns_meta = reader->Meta(kMetaTrimmedThroughNs);
  if (!ns_meta.ok()) return ns_meta.status();
  std::optional<int64_t> ns = ParseMetaInt(*ns_meta);
  bool before;
  if (filter.since_seq)
    before = *filter.since_seq <= *seq;
  else if (filter.since_ns)
    before = !ns || *filter.since_ns <= *ns;
  else
    before = !cut_by_limit;
  if (!before) return std::optional<std::string>();
  std::string when = ns ? " (" + FormatLocalTime(*ns) + " and before)" : "";
  return std::optional<std::string>(
      "done records up to seq " + std::to_string(*seq) + when +
      " were trimmed from the local journal; their history is in the target: scribectl history "
      "PATH / scribectl timeline");
}

}  // namespace

std::string ValidateOpName(const std::string& op) {
  if (ParseOp(op)) return "";
  return "unknown operation '" + op + "'; valid operations: " + JoinOpNames();
}

std::string ValidateStateName(const std::string& state) {
  if (IsValidState(state)) return "";
  return "unknown state '" + state + "'; valid states: pending, uploading, done, failed, skipped";
}

std::string ValidateSeqOrTime(const std::string& text) {
  auto parsed = ParseSeqOrTime(text, NowNs());
  return parsed.ok() ? "" : parsed.status().message();
}

Result<JournalFilter> BuildJournalFilter(const JournalOptions& o, int64_t now_ns) {
  JournalFilter f;
  if (o.since) {
    auto b = ParseSeqOrTime(*o.since, now_ns);
    if (!b.ok()) return b.status().WithContext("--since");
    if (b->kind == SeqOrTime::Kind::kSeq)
      f.since_seq = b->value;
    else
      f.since_ns = b->value;
  }
  if (o.until) {
    auto b = ParseSeqOrTime(*o.until, now_ns);
    if (!b.ok()) return b.status().WithContext("--until");
    if (b->kind == SeqOrTime::Kind::kSeq)
      f.until_seq = b->value;
    else
      f.until_ns = b->value;
  }
  if (o.path_glob) {
    // Journal paths are relative to DATADIR; "/docs/*" means "docs/*".
    std::string glob = *o.path_glob;
    size_t first = glob.find_first_not_of('/');
    glob.erase(0, first == std::string::npos ? glob.size() : first);
    f.path_glob = glob;
  }
  if (o.op) {
    if (std::string msg = ValidateOpName(*o.op); !msg.empty())
      return Status::Error(EINVAL, "--op: " + msg);
    f.op = *o.op;
  }
  if (o.state) {
    if (std::string msg = ValidateStateName(*o.state); !msg.empty())
      return Status::Error(EINVAL, "--state: " + msg);
    f.state = *o.state;
  }
  if (o.limit) {
    if (*o.limit < 0) return Status::Error(EINVAL, "--limit must not be negative");
    f.limit = *o.limit;
    f.newest_first = true;
  }
  return f;
}

std::string DisplayPath(const Record& r) {
  std::string path = r.path.empty() ? (IsControlOp(r.op) ? "" : ".") : EscapeControl(r.path);
  if (r.new_path) path += " -> " + (r.new_path->empty() ? "." : EscapeControl(*r.new_path));
  return path;
}

std::string DescribeRecord(const Record& r) {
  std::vector<std::string> parts;
  if (r.ranges.size() == 1) {
    parts.push_back("[" + std::to_string(r.ranges[0].offset) + "+" +
                    std::to_string(r.ranges[0].length) + "]");
  } else if (r.ranges.size() > 1) {
    uint64_t bytes = 0;
    for (const ByteRange& br : r.ranges) bytes += br.length;
    parts.push_back(std::to_string(r.ranges.size()) + " ranges, " + FormatBytes(bytes));
  }
  if (r.size) parts.push_back("size=" + std::to_string(*r.size));
  if (r.mode) {
    parts.push_back("mode=" + OctalMode(*r.mode));
    if (const char* type = SpecialFileType(*r.mode)) parts.push_back(std::string("type=") + type);
  }
  if (r.op == Op::kRename && r.flags && *r.flags != 0)
    parts.push_back("flags=" + RenameFlags(*r.flags));
  if (!r.detail.empty()) {
    auto d = nlohmann::ordered_json::parse(r.detail, nullptr, /*allow_exceptions=*/false);
    if (d.is_object()) {
      for (const auto& [key, value] : d.items()) {
        std::string v;
        if (value.is_string()) {
          v = value.get<std::string>();
        } else if (key == "mode" && value.is_number_unsigned()) {
          auto m = value.get<uint32_t>();
          if (r.mode && (*r.mode & 07777) == (m & 07777)) continue;  // shown already
          v = OctalMode(m);
        } else if (IsTimeKey(key) && value.is_number_integer()) {
          v = FormatLocalTime(value.get<int64_t>());
        } else {
          v = value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
        }
        parts.push_back(EscapeControl(key) + "=" + EscapeControl(v));
      }
    } else {
      parts.push_back(EscapeControl(r.detail));
    }
  }
  if (r.attempts > 0 && r.state != kStateDone)
    parts.push_back("attempts=" + std::to_string(r.attempts));
  if (r.error) parts.push_back("error: " + EscapeControl(*r.error));
  std::string out;
  for (const std::string& p : parts) {
    if (!out.empty()) out += ' ';
    out += p;
  }
  return out;
}

nlohmann::ordered_json RecordToJson(const Record& r) {
  using Json = nlohmann::ordered_json;
  auto opt_text = [](const std::optional<std::string>& v) { return v ? Json(*v) : Json(nullptr); };
  auto opt_int = [](const auto& v) { return v ? Json(*v) : Json(nullptr); };
  Json ranges = Json::array();
  for (const ByteRange& br : r.ranges) ranges.push_back(Json::array({br.offset, br.length}));
  Json detail = nullptr;
  if (!r.detail.empty()) {
    detail = Json::parse(r.detail, nullptr, /*allow_exceptions=*/false);
    if (detail.is_discarded()) detail = r.detail;
  }
  Json j;
  j["seq"] = r.seq;
  j["time_ns"] = r.time_ns;
  j["time"] = FormatUtcIso(r.time_ns);
  j["op"] = OpName(r.op);
  j["path"] = r.path;
  j["new_path"] = opt_text(r.new_path);
  j["ranges"] = std::move(ranges);
  j["size"] = opt_int(r.size);
  j["mode"] = opt_int(r.mode);
  j["uid"] = r.uid;
  j["gid"] = r.gid;
  j["pid"] = r.pid;
  j["flags"] = opt_int(r.flags);
  j["detail"] = std::move(detail);
  j["state"] = r.state;
  j["attempts"] = r.attempts;
  j["error"] = opt_text(r.error);
  j["etag"] = opt_text(r.etag);
  j["sha256"] = opt_text(r.sha256);
  j["version_id"] = opt_text(r.version_id);
  j["state_ns"] = opt_int(r.state_ns);
  return j;
}

Result<int64_t> TargetIdByName(const std::vector<TargetEntry>& targets, const std::string& name) {
  for (const TargetEntry& t : targets)
    if (t.name == name) return t.id;
  for (const TargetEntry& t : targets)
    if (t.url == name) return t.id;
  if (targets.empty())
    return Status::Error(EINVAL, "--target " + name +
                                     ": this journal has no target (journal only, or written "
                                     "before targets had names)");
  std::string known;
  for (const TargetEntry& t : targets) known += (known.empty() ? "" : ", ") + t.name;
  return Status::Error(EINVAL,
                       "--target " + name + ": no such target (this journal has: " + known + ")");
}

int RunJournal(const GlobalOptions& global, const JournalOptions& options) {
  JournalOptions opts = options;
  if (opts.follow && opts.until)
    return Fail(kExitUsage, "--until cannot be combined with --follow");
  if (opts.follow && !opts.limit && !opts.since) opts.limit = kFollowDefaultLimit;
  auto filter = BuildJournalFilter(opts, NowNs());
  if (!filter.ok()) return Fail(kExitUsage, filter.status().message());

  StateLocation location;
  int exit_code = kExitOk;
  std::unique_ptr<JournalReader> reader = OpenJournalOrFail(global, &location, &exit_code);
  if (!reader) return exit_code;
  if (opts.target) {
    auto targets = Targets::List(*reader);
    if (!targets.ok()) return Fail(kExitFailure, targets.status().message());
    auto id = TargetIdByName(*targets, *opts.target);
    if (!id.ok()) return Fail(kExitUsage, id.status().message());
    filter->target = *id;
  }
  if (opts.follow) InstallStopHandlers();

  // Everything up to the current end is listed first; --follow continues
  // from there. Commits are atomic and seqs grow, so nothing is missed.
  auto max_seq = reader->MaxSeq();
  if (!max_seq.ok()) return Fail(kExitFailure, max_seq.status().message());
  int64_t cursor = *max_seq;
  Printer printer(global.json, opts.follow);
  bool cut_by_limit = false;
  if (filter->limit) {
    JournalFilter f = *filter;
    f.until_seq = std::min(f.until_seq.value_or(cursor), cursor);
    auto rows = reader->Query(f);
    if (!rows.ok()) return Fail(kExitFailure, rows.status().message());
    printer.Size(*rows, cursor);
    for (const Record& r : *rows) printer.Print(r);
    cut_by_limit = static_cast<int64_t>(rows->size()) >= *filter->limit;
  } else {
    auto n = PrintRange(reader.get(), *filter, 1, cursor, &printer, /*size_first_page=*/true);
    if (!n.ok()) return Fail(kExitFailure, n.status().message());
  }
  if (int rc = FinishOutput(); rc != kExitOk) return rc;
  auto note = TrimNote(reader.get(), *filter, cut_by_limit);
  if (!note.ok()) return Fail(kExitFailure, note.status().message());
  if (*note) Note(**note);
  if (!opts.follow) return kExitOk;

  JournalFilter follow_filter = *filter;
  follow_filter.limit.reset();
  while (!g_stop) {
    struct timespec ts = {0, kFollowPollNs};
    nanosleep(&ts, nullptr);
    if (g_stop) break;
    auto now_max = reader->MaxSeq();
    if (!now_max.ok()) return Fail(kExitFailure, now_max.status().message());
    if (*now_max <= cursor) continue;
    auto n = PrintRange(reader.get(), follow_filter, cursor + 1, *now_max, &printer,
                        /*size_first_page=*/false);
    if (!n.ok()) return Fail(kExitFailure, n.status().message());
    cursor = *now_max;
    if (int rc = FinishOutput(); rc != kExitOk) return rc;
  }
  return FinishOutput();
}

}  // namespace scribefs::ctl
