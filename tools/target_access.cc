#include "tools/target_access.h"

#include <sys/stat.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "journal/reader.h"
#include "journal/targets.h"
#include "uploader/store_factory.h"

namespace scribefs::ctl {

void AddTargetOptions(CLI::App* cmd, TargetFlags* flags) {
  const char* g = "Target (default: what the mount's daemon last used)";
  cmd->add_option("--target", flags->target,
                  "s3://BUCKET[/PREFIX] or file:///PATH, or the name of one of the mount's "
                  "targets (with -m: its URL, endpoint, region, CA file and excludes as the "
                  "daemon noted them); credentials come from AWS_ACCESS_KEY_ID / "
                  "AWS_SECRET_ACCESS_KEY")
      ->group(g);
  cmd->add_option("--endpoint", flags->endpoint, "S3 endpoint URL (path-style), e.g. http://127.0.0.1:7480")
      ->group(g);
  cmd->add_option("--region", flags->region, "S3 region (default AWS_REGION or us-east-1)")->group(g);
  cmd->add_option("--ca-file", flags->ca_file, "CA bundle to verify the endpoint's TLS certificate")
      ->group(g);
  cmd->add_option("--exclude", flags->excludes,
                  "Also ignore paths matching this glob (repeatable), as scribefs --exclude")
      ->group(g);
  cmd->add_flag("--no-default-excludes", flags->no_default_excludes,
                "Without -m, do not ignore the default excludes (*.swp *.swx *~ .#*)")
      ->group(g);
}

namespace {

bool MountNamed(const GlobalOptions& g) {
  return !g.datadir.empty() || !g.state_dir.empty() || getenv("SCRIBEFS_STATE_DIR") != nullptr;
}

std::string MetaOr(JournalReader& r, const std::string& key) {
  auto v = r.Meta(key);
  return v.ok() && v->has_value() ? **v : std::string();
}

// A string field of a target's settings (journal/targets.h), "" when absent.
std::string SettingOr(const nlohmann::json& settings, const char* key) {
  auto it = settings.find(key);
  return it != settings.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// --target NAME: the journal's target of that name (names hold no ':' or
// '/', so a URL never matches one). nullopt when `name` names none; the
// error (exit 2) when it looks like a name but the journal has no such
// target.
std::optional<TargetEntry> TargetNamed(JournalReader& reader, const std::string& name,
                                       int* exit_code) {
  if (name.find(':') != std::string::npos || name.find('/') != std::string::npos)
    return std::nullopt;
  auto targets = Targets::List(reader);
  if (!targets.ok()) {
    *exit_code = Fail(kExitFailure, targets.status().message());
    return std::nullopt;
  }
  for (const TargetEntry& t : *targets)
    if (t.name == name) return t;
  std::string known;
  for (const TargetEntry& t : *targets) known += (known.empty() ? "" : ", ") + t.name;
  *exit_code =
      Fail(kExitUsage, "--target " + name +
                           ": no target of that name in the mount's "
                           "journal (" +
                           (known.empty() ? std::string("it has none") : "it has: " + known) +
                           "); give a name it has, or a URL");
  return std::nullopt;
}

// --target NAME: url becomes that target's URL, and its endpoint, region, CA
// file (unless given) and excludes come from its settings. A URL is left
// alone. False, with *exit_code set, for a name the journal does not know.
bool ApplyNamedTarget(JournalReader& reader, std::string& url, TargetOptions& to,
                      std::vector<std::string>& excludes, bool& have_excludes, ResolvedTarget& out,
                      int* exit_code) {
  *exit_code = kExitOk;
  auto named = TargetNamed(reader, url, exit_code);
  if (!named) return *exit_code == kExitOk;
  auto settings = nlohmann::json::parse(named->settings, nullptr, false);
  url = named->url;
  out.from_journal = true;
  if (to.endpoint.empty()) to.endpoint = SettingOr(settings, "endpoint");
  if (to.region.empty()) to.region = SettingOr(settings, "region");
  if (to.ca_file.empty()) to.ca_file = SettingOr(settings, "ca_file");
  if (settings.is_object() && settings.contains("excludes") && settings["excludes"].is_array()) {
    for (const auto& e : settings["excludes"])
      if (e.is_string()) excludes.push_back(e.get<std::string>());
    have_excludes = true;
  }
  return true;
}

}  // namespace

std::optional<ResolvedTarget> ResolveTargetOrFail(const GlobalOptions& global,
                                                  const TargetFlags& flags, int* exit_code) {
  ResolvedTarget out;
  TargetOptions to;
  std::string url = flags.target;
  to.endpoint = flags.endpoint;
  to.region = flags.region;
  to.ca_file = flags.ca_file;
  std::vector<std::string> excludes;
  bool have_journal_excludes = false;

  if (url.empty() || MountNamed(global)) {
    if (!MountNamed(global)) {
      *exit_code = Fail(kExitUsage,
                        "no target: give --target URL (s3://BUCKET[/PREFIX] or file:///PATH), or "
                        "name a mount with -m DATADIR");
      return std::nullopt;
    }
    StateLocation loc;
    auto reader = OpenJournalOrFail(global, &loc, exit_code);
    if (!reader) {
      if (!url.empty() && *exit_code == kExitNoState) {
        // --target says everything needed; the mount is optional then.
        *exit_code = kExitOk;
      } else {
        return std::nullopt;
      }
    } else {
      out.datadir = !loc.datadir.empty() ? loc.datadir : MetaOr(*reader, "datadir");
      // A target's name (several targets, issue 16): its URL and settings.
      if (!url.empty() &&
          !ApplyNamedTarget(*reader, url, to, excludes, have_journal_excludes, out, exit_code))
        return std::nullopt;
      if (url.empty()) {
        url = MetaOr(*reader, "target");
        if (url.empty()) {
          *exit_code = Fail(kExitUsage, "the mount's journal names no target (scribefs ran "
                                        "without --target); give --target URL");
          return std::nullopt;
        }
        out.from_journal = true;
        if (to.endpoint.empty()) to.endpoint = MetaOr(*reader, "endpoint");
        if (to.region.empty()) to.region = MetaOr(*reader, "region");
        if (to.ca_file.empty()) to.ca_file = MetaOr(*reader, "ca_file");
      }
      std::string ex = have_journal_excludes ? "" : MetaOr(*reader, "excludes");
      if (!ex.empty()) {
        auto j = nlohmann::json::parse(ex, nullptr, false);
        if (j.is_array()) {
          for (const auto& e : j)
            if (e.is_string()) excludes.push_back(e.get<std::string>());
          have_journal_excludes = true;
        }
      }
    }
  }
  if (!have_journal_excludes && !flags.no_default_excludes) excludes = DefaultExcludes();
  for (const auto& e : flags.excludes) excludes.push_back(e);

  auto store = OpenStore(url, to);
  if (!store.ok()) {
    *exit_code = Fail(kExitUsage, "target " + url + ": " + store.status().message());
    return std::nullopt;
  }
  out.store = std::move(store.value());
  out.url = out.store->Describe();
  out.filter = ExcludeFilter(std::move(excludes));
  *exit_code = kExitOk;
  return out;
}

std::vector<std::string> JournalTargetNames(const GlobalOptions& global) {
  std::vector<std::string> out;
  if (!MountNamed(global)) return out;
  auto loc = LocateState(global, getenv("SCRIBEFS_STATE_DIR"));
  if (!loc.ok()) return out;
  struct stat st;
  if (stat(loc->paths.journal().c_str(), &st) != 0) return out;
  auto reader = JournalReader::Open(loc->paths.journal());
  if (!reader.ok()) return out;
  auto targets = Targets::List(*reader.value());
  if (!targets.ok()) return out;
  for (const TargetEntry& t : *targets) out.push_back(t.name);
  return out;
}

}  // namespace scribefs::ctl
