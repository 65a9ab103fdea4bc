// The `set` verb: changes a setting until restart
// ({"cmd":"set","key":"bwlimit","value":"5M"}). The keys are a table, so
// that a new one is one entry.
#include <spdlog/spdlog.h>

#include <cmath>

#include "daemon/verbs.h"
#include "uploader/bandwidth.h"

namespace scribefs::verbs {
namespace {

struct SettableKey {
  const char* name;
  // Applies value; the answer's fields or an Error().
  json (*apply)(const ControlDeps& d, const std::string& value);
};

json SetBwlimit(const ControlDeps& d, const std::string& value) {
  if (!d.replicator || !d.replicator->bandwidth())
    return Error("no_target", "no --target: nothing is uploaded, so there is nothing to limit");
  auto spec = ParseBandwidth(value);
  if (!spec.ok()) return Error(spec.status());
  spdlog::info("scribectl set bwlimit {}", spec->text);
  d.replicator->bandwidth()->Set(std::move(spec).value());
  return json{{"bandwidth", BandwidthJson(d.replicator->bandwidth()->state())}};
}

constexpr SettableKey kKeys[] = {{"bwlimit", SetBwlimit}};

std::string KnownKeys() {
  std::string out;
  for (const auto& k : kKeys) out += (out.empty() ? "" : ", ") + std::string(k.name);
  return out;
}

}  // namespace

json BandwidthJson(const BandwidthLimiter::State& st) {
  return json{{"limit_bps", st.limit ? json(st.limit) : json(nullptr)},
              {"schedule", st.schedule},
              {"source", BandwidthLimiter::SourceName(st.source)},
              {"rate_bps", std::round(st.measured_bps)}};
}

json SetVerb(const ControlDeps& d, const json& req, const ControlRequest&) {
  if (!req.contains("key") || !req["key"].is_string() || !req.contains("value") ||
      !req["value"].is_string())
    return Error("invalid", "set needs \"key\" and \"value\" (strings); keys: " + KnownKeys());
  std::string key = req["key"].get<std::string>();
  for (const auto& k : kKeys) {
    if (key != k.name) continue;
    json answer = k.apply(d, req["value"].get<std::string>());
    if (answer.value("ok", true)) {
      answer["key"] = key;
      answer["value"] = req["value"];
    }
    return answer;
  }
  return Error("invalid", "unknown key '" + key + "' (known keys: " + KnownKeys() + ")");
}

}  // namespace scribefs::verbs
