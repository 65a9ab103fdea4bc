#include "tools/ctl_common.h"

#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/mountinfo.h"

namespace scribefs::ctl {
namespace {

// The DATADIR a scribefs mount at `path` serves: its source in
// /proc/self/mountinfo (the daemon's fsname), so that -m takes the mount
// point as well. "" when path is no scribefs mount or serves itself.
std::string DatadirOfMount(const std::string& path) {
  std::vector<MountEntry> mounts = ReadMountInfo();
  const MountEntry* m = ScribefsMountAt(mounts, path);
  if (m && !m->source.empty() && m->source[0] == '/' && m->source != path) return m->source;
  return "";
}

}  // namespace

Result<StateLocation> LocateState(const GlobalOptions& options, const char* env_state_dir) {
  StateLocation loc;
  if (!options.state_dir.empty()) {
    loc.paths.dir = options.state_dir;
    loc.source = "--state-dir";
    return loc;
  }
  if (!options.datadir.empty()) {
    auto canonical = CanonicalDir(options.datadir);
    if (!canonical.ok()) return canonical.status().WithContext("-m DATADIR");
    loc.datadir = *canonical;
    if (std::string served = DatadirOfMount(loc.datadir); !served.empty()) loc.datadir = served;
    loc.paths.dir = DefaultStateDir(loc.datadir);
    loc.source = "-m";
    return loc;
  }
  if (env_state_dir && *env_state_dir) {
    loc.paths.dir = env_state_dir;
    loc.source = "SCRIBEFS_STATE_DIR";
    return loc;
  }
  return Status::Error(EINVAL,
                       "which mount? pass -m DATADIR (the directory scribefs serves) or "
                       "--state-dir DIR (or set SCRIBEFS_STATE_DIR)");
}

namespace {
bool json_errors = false;  // set once by main, before any thread starts
}  // namespace

void SetJsonErrors(bool on) { json_errors = on; }
bool JsonErrors() { return json_errors; }

void Note(const std::string& message) {
  fflush(stdout);
  if (json_errors)
    fprintf(stderr, "%s\n",
            nlohmann::json{{"note", message}}
                .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                .c_str());
  else
    fprintf(stderr, "scribectl: note: %s\n", message.c_str());
}

std::string JsonError(int exit_code, const std::string& message) {
  return nlohmann::json{{"ok", false}, {"error", message}, {"exit_code", exit_code}}.dump(
      -1, ' ', false, nlohmann::json::error_handler_t::replace);
}

int Fail(int exit_code, const std::string& message) {
  fflush(stdout);  // keep the order of what was printed so far
  if (json_errors)
    fprintf(stderr, "%s\n", JsonError(exit_code, message).c_str());
  else
    fprintf(stderr, "scribectl: %s\n", message.c_str());
  return exit_code;
}

namespace {

std::string NoStateMessage(const StateLocation& loc) {
  std::string msg;
  if (!loc.datadir.empty()) {
    msg = "no scribefs state for " + loc.datadir + " (looked in " + loc.paths.dir +
          "); is it mounted?";
  } else {
    msg = "no scribefs journal in " + loc.paths.dir + " (from " + loc.source + "); is it mounted?";
  }
  if (!loc.datadir.empty() && geteuid() != 0) {
    msg +=
        "\nscribectl: hint: a scribefs run by another user (e.g. root) keeps its state "
        "elsewhere; run scribectl as that user or pass --state-dir";
  }
  return msg;
}

int FailPermission(const std::string& journal) {
  return Fail(kExitFailure, "cannot read " + journal +
                                ": permission denied; the journal is readable only by the "
                                "user that runs scribefs (try sudo)");
}

}  // namespace

std::unique_ptr<JournalReader> OpenJournalOrFail(const GlobalOptions& options,
                                                 StateLocation* location, int* exit_code) {
  auto loc = LocateState(options, getenv("SCRIBEFS_STATE_DIR"));
  if (!loc.ok()) {
    int err = loc.status().code();
    if (err == EINVAL)
      *exit_code = Fail(kExitUsage, loc.status().message());
    else if (err == ENOENT || err == ENOTDIR)
      *exit_code = Fail(kExitNoState, loc.status().message());
    else
      *exit_code = Fail(kExitFailure, loc.status().message());
    return nullptr;
  }
  *location = *loc;
  const std::string journal = loc->paths.journal();
  struct stat st;
  if (stat(journal.c_str(), &st) != 0) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR)
      *exit_code = Fail(kExitNoState, NoStateMessage(*loc));
    else if (err == EACCES || err == EPERM)
      *exit_code = FailPermission(journal);
    else
      *exit_code = Fail(kExitFailure, PosixError(journal, err).message());
    return nullptr;
  }
  auto reader = JournalReader::Open(journal);
  if (!reader.ok()) {
    int err = reader.status().code();
    if ((err == EACCES || err == EPERM) && access(journal.c_str(), R_OK) != 0) {
      *exit_code = FailPermission(journal);
    } else if (err == EACCES || err == EPERM) {
      // The file is readable, but a WAL reader also needs journal.db-shm,
      // which SQLite must create when scribefs is not running.
      *exit_code = Fail(kExitFailure,
                        reader.status().message() +
                            "\nscribectl: hint: reading the journal "
                            "needs write access to " +
                            loc->paths.dir +
                            " while scribefs is not running; run scribectl as the user that runs "
                            "scribefs (try sudo)");
    } else if (err == ENOENT) {
      *exit_code = Fail(kExitNoState, NoStateMessage(*loc));
    } else {
      *exit_code = Fail(kExitFailure, reader.status().message());
    }
    return nullptr;
  }
  *exit_code = kExitOk;
  return std::move(reader.value());
}

int FinishOutput() {
  if (fflush(stdout) != 0 || ferror(stdout)) {
    int err = errno;
    return Fail(kExitFailure, PosixError("writing output", err ? err : EIO).message());
  }
  return kExitOk;
}

}  // namespace scribefs::ctl
