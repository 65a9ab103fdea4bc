// The control verbs (README, "Control socket"), one file each (the checkpoint
// procedure in checkpoint.cc), and the helpers they share. Each verb takes
// the request and answers a JSON object: its fields, or an error made by
// Error() ({"ok":false,"error","code"}); the server adds "ok":true.
// MakeControlHandlers (control_plane.cc) maps the verb names to these.
//
// Thread-safe: verbs run concurrently on control connection threads;
// checkpoints and rescans are each serialized by VerbLocks.
#pragma once

#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "daemon/checkpoint_storer.h"
#include "daemon/control_plane.h"
#include "journal/record.h"
#include "uploader/bandwidth.h"

namespace scribefs::verbs {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

// Shared by every connection of one control server.
struct VerbLocks {
  std::mutex checkpoint_mu;  // one checkpoint at a time
  std::mutex rescan_mu;      // one rescan at a time
};

json StatusVerb(const ControlDeps& d, const json& req, const ControlRequest& ctx);
json PauseVerb(const ControlDeps& d, const json& req, const ControlRequest& ctx);
json ResumeVerb(const ControlDeps& d, const json& req, const ControlRequest& ctx);
json FlushVerb(const ControlDeps& d, const json& req, const ControlRequest& ctx);
json RetryVerb(const ControlDeps& d, const json& req, const ControlRequest& ctx);
json StopVerb(const ControlDeps& d, const json& req, const ControlRequest& ctx);
json CheckpointsVerb(const ControlDeps& d, const json& req, const ControlRequest& ctx);
json CheckpointVerb(const ControlDeps& d, VerbLocks& shared, const json& req,
                    const ControlRequest& ctx);
json RescanVerb(const ControlDeps& d, VerbLocks& shared, const json& req,
                const ControlRequest& ctx);
// verb_set.cc: {"cmd":"set","key":K,"value":V}; keys: bwlimit.
json SetVerb(const ControlDeps& d, const json& req, const ControlRequest& ctx);
// The "bandwidth" object of status and set (README, "Bandwidth limit").
json BandwidthJson(const BandwidthLimiter::State& st);

// ---- helpers (verbs_common.cc) ----------------------------------------------

// Milliseconds rounded to 0.1, as every answer gives them.
double Tenths(double ms);
// Milliseconds since t, rounded to 0.1.
double MsSince(Clock::time_point t);
// The "code" of an error answer, from the errno of the status.
std::string CodeOf(const Status& s);
// An error answer; code defaults to CodeOf(s).
json Error(const Status& s, const std::string& code = "");
json Error(const std::string& code, const std::string& message);
// A positive number of seconds from request field `key` (at most max), or def.
Result<double> Seconds(const json& req, const char* key, double def, double max);
// A record's detail as a JSON object ({} when absent or not an object).
json Detail(const Record& r);
// A control event record (pause, resume, checkpoint): path '', state done.
Record ControlRecord(Op op, const json& detail);
// Checkpoint records of the journal, oldest first.
Result<std::vector<Record>> CheckpointRecords(const std::string& journal_path);
// The name of the target a checkpoint record was stored on (detail.target_name).
// Records of scribefs before issue 16 name none: they are the first target's.
std::string CheckpointRecordTarget(const json& detail, const std::string& first);
// A checkpoint's state as `checkpoints` and `status` answer it: {name, state
// (captured|stored|failed), seq (the mark), captured_ns, stored_ns (null
// until stored), held_ms, frozen, spool_bytes, error (null unless failed)}.
json CheckpointStateJson(const CheckpointState& c);

}  // namespace scribefs::verbs
