#include "journal/run_marker.h"

#include <sstream>

#include "journal/journal.h"

namespace scribefs {
namespace {
// meta "run" = "<running|stopped> <started_ns> <boot_id>"
constexpr char kRunKey[] = "run";
}  // namespace

Status WriteRunMarker(Journal& journal, const RunMarker& m) {
  if (m.boot_id.empty() || m.boot_id.find_first_of(" \t\n") != std::string::npos)
    return Status::Error(EINVAL, "journal: run marker: malformed boot id '" + m.boot_id + "'");
  std::string v = std::string(m.running ? "running" : "stopped") + " " +
                  std::to_string(m.started_ns) + " " + m.boot_id;
  SCRIBEFS_RETURN_IF_ERROR(journal.SetMeta(kRunKey, v));
  return journal.Sync().WithContext("journal: run marker");
}

Result<std::optional<RunMarker>> ReadRunMarker(Journal& journal) {
  auto v = journal.GetMeta(kRunKey);
  if (!v.ok()) {
    if (v.status().code() == ENOENT) return std::optional<RunMarker>();
    return v.status();
  }
  std::istringstream in(*v);
  std::string state, rest;
  RunMarker m;
  if (!(in >> state >> m.started_ns >> m.boot_id) || (in >> rest) ||
      (state != "running" && state != "stopped"))
    return std::optional<RunMarker>();
  m.running = state == "running";
  return std::optional<RunMarker>(m);
}

}  // namespace scribefs
