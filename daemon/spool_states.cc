#include "daemon/spool_states.h"

#include <algorithm>
#include <memory>
#include <utility>

namespace scribefs {

namespace {

// A frozen regular file's bytes at the mark, as a payload source.
class FrozenContent : public PayloadSource {
 public:
  explicit FrozenContent(FrozenFile file) : file_(std::move(file)) {}
  Result<size_t> Pread(void* buf, size_t n, uint64_t off) const override {
    return file_.Pread(buf, n, off);
  }

 private:
  FrozenFile file_;
};

MarkedState::Kind KindOf(FrozenFile::Kind k) {
  switch (k) {
    case FrozenFile::Kind::kAbsent:
      return MarkedState::Kind::kAbsent;
    case FrozenFile::Kind::kDirectory:
      return MarkedState::Kind::kDirectory;
    case FrozenFile::Kind::kSymlink:
      return MarkedState::Kind::kSymlink;
    case FrozenFile::Kind::kRegular:
      return MarkedState::Kind::kRegular;
    case FrozenFile::Kind::kOther:
      break;
  }
  return MarkedState::Kind::kOther;
}

}  // namespace

std::vector<MarkedCapture> SpoolStates::LiveCaptures() const {
  std::vector<MarkedCapture> out;
  for (const CaptureInfo& c : spool_->Captures())
    if (!c.abandoned) out.push_back({c.id, c.seq});
  std::sort(out.begin(), out.end(), [](const MarkedCapture& a, const MarkedCapture& b) {
    return a.seq != b.seq ? a.seq < b.seq : a.id < b.id;
  });
  return out;
}

bool SpoolStates::Frozen(const std::string& id, const std::string& path) const {
  return spool_->Freezes(id, path);
}

Result<MarkedState> SpoolStates::Open(const std::string& id, const std::string& path) const {
  auto f = spool_->OpenAtMark(id, path);
  if (!f.ok()) return f.status();
  MarkedState s;
  s.kind = KindOf(f->kind());
  s.attr = f->attr();
  s.target = f->target();
  if (s.kind == MarkedState::Kind::kRegular)
    s.content = std::make_shared<FrozenContent>(std::move(f.value()));
  return s;
}

}  // namespace scribefs
