// Helpers shared by the control verbs (daemon/verbs.h).
#include <cmath>

#include "daemon/verbs.h"
#include "journal/reader.h"

namespace scribefs::verbs {

double Tenths(double ms) { return std::round(ms * 10) / 10; }

double MsSince(Clock::time_point t) {
  return Tenths(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
}

// The "code" of an error answer, from the errno of the status.
std::string CodeOf(const Status& s) {
  switch (s.code()) {
    case ETIMEDOUT:
      return "timeout";
    case EBUSY:
      return "busy";
    case ENOENT:
      return "not_found";
    case EINVAL:
      return "invalid";
    case EEXIST:
      return "exists";
    case ESHUTDOWN:
      return "unmounting";
    case ECANCELED:
      return "cancelled";
    default:
      return "failed";
  }
}

json Error(const Status& s, const std::string& code) {
  return json{{"ok", false}, {"error", s.message()}, {"code", code.empty() ? CodeOf(s) : code}};
}

json Error(const std::string& code, const std::string& message) {
  return json{{"ok", false}, {"error", message}, {"code", code}};
}

// A positive number of seconds from request field `key`, or `def`.
Result<double> Seconds(const json& req, const char* key, double def, double max) {
  auto it = req.find(key);
  if (it == req.end() || it->is_null()) return def;
  if (!it->is_number()) return Status::Error(EINVAL, std::string(key) + " must be a number");
  double v = it->get<double>();
  if (!(v > 0) || v > max)
    return Status::Error(EINVAL, std::string(key) + " must be > 0 and at most " +
                                     std::to_string(static_cast<int64_t>(max)));
  return v;
}

json Detail(const Record& r) {
  if (r.detail.empty()) return json::object();
  json d = json::parse(r.detail, nullptr, false);
  return d.is_object() ? d : json::object();
}

Record ControlRecord(Op op, const json& detail) {
  Record r;
  r.op = op;
  r.path = "";
  r.state = std::string(kStateDone);
  r.detail = detail.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

// Checkpoint records of the journal, oldest first.
Result<std::vector<Record>> CheckpointRecords(const std::string& journal_path) {
  auto reader = JournalReader::Open(journal_path);
  if (!reader.ok()) return reader.status();
  JournalFilter f;
  f.op = std::string(OpName(Op::kCheckpoint));
  return reader.value()->Query(f);
}

std::string CheckpointRecordTarget(const json& detail, const std::string& first) {
  std::string t = detail.value("target_name", "");
  return t.empty() ? first : t;
}

json CheckpointStateJson(const CheckpointState& c) {
  return {{"name", c.name},
          {"state", c.state},
          {"seq", c.seq},
          {"captured_ns", c.captured_ns},
          {"stored_ns", c.state == "stored" ? json(c.stored_ns) : json(nullptr)},
          {"held_ms", c.held_ms},
          {"frozen", c.frozen},
          {"spool_bytes", c.spool_bytes},
          {"targets", c.targets.empty() ? json(c.stored_on) : json(c.targets)},
          {"stored_on", c.stored_on},
          {"failed_on", c.failed_on.empty() ? json::object() : json(c.failed_on)},
          {"error", c.error.empty() ? json(nullptr) : json(c.error)}};
}

}  // namespace scribefs::verbs
