// The one file that includes fuse_lowlevel.h. Each callback unpacks the
// request, calls Filesystem, and replies exactly once. Exceptions never cross
// into C: they become ENOMEM/EIO replies.
#define FUSE_USE_VERSION 314
#include "fs/fuse_adapter.h"

#include <fuse_lowlevel.h>
#include <sys/file.h>
#include <csignal>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/spdlog.h>

#include "fs/reply_pool.h"

namespace scribefs {

struct FuseServer::Context {
  Filesystem* fs = nullptr;
  double timeout = 1.0;
  // Other users reach the mount (allow_other/allow_root): the kernel must
  // enforce their POSIX ACLs, not only the mode bits (see DoInit).
  bool acl = false;
  bool dont_mask = false;  // negotiated: the umask is ours to apply
  // Sync mode: FUSE workers waiting for an upload, at most max_waiting; the
  // waits beyond go to `replies` (see ReplyPool). Null in async mode.
  std::atomic<int> waiting{0};
  int max_waiting = 1;
  std::unique_ptr<ReplyPool> replies;
};

namespace {

// libfuse splits -o at ',' and takes '\\' as an escape (fuse_opt.c), so a
// value with either needs escaping to reach the mount unchanged.
std::string EscapeFuseOpt(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == ',' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

FuseServer::Context* Ctx(fuse_req_t req) {
  return static_cast<FuseServer::Context*>(fuse_req_userdata(req));
}
Filesystem& Fs(fuse_req_t req) { return *Ctx(req)->fs; }

Caller CallerOf(fuse_req_t req) {
  const fuse_ctx* c = fuse_req_ctx(req);
  return Caller{c->uid, c->gid, c->pid, Ctx(req)->dont_mask ? c->umask : mode_t{0}};
}

FileHandle* Fh(fuse_file_info* fi) {
  return fi ? reinterpret_cast<FileHandle*>(fi->fh) : nullptr;
}

void ReplyErr(fuse_req_t req, const Status& s) { fuse_reply_err(req, s.ok() ? 0 : s.code()); }

fuse_entry_param EntryParam(fuse_req_t req, const Entry& e) {
  fuse_entry_param p;
  memset(&p, 0, sizeof p);
  p.ino = e.id;
  p.attr = e.attr;
  p.attr_timeout = Ctx(req)->timeout;
  p.entry_timeout = Ctx(req)->timeout;
  return p;
}

void ReplyEntry(fuse_req_t req, const Result<Entry>& e) {
  if (!e.ok()) return ReplyErr(req, e.status());
  fuse_entry_param p = EntryParam(req, e.value());
  if (fuse_reply_entry(req, &p) != 0) Fs(req).Forget(p.ino, 1);  // interrupted: undo the reference
}

// Runs body, turning exceptions into replies (they must not reach C code).
template <typename F>
void Guard(fuse_req_t req, F&& body) {
  try {
    body();
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
  } catch (const std::exception& ex) {
    spdlog::error("internal error: {}", ex.what());
    fuse_reply_err(req, EIO);
  }
}

// The replies of mutating operations. A Mutation's outcome can only be taken
// out through Filesystem::Settle, which releases the records it holds and, in
// sync mode, returns only once its record is in the target (README,
// "Replication"): every mutating callback replies through SettleThenReply.
//
// reply(req, outcome) answers the request. In sync mode at most
// Context::max_waiting FUSE workers wait for uploads at once, so that reads
// and stats always find a free worker while the target is down; a wait
// beyond those runs, with its reply, on the ReplyPool (its held records are
// released here first: the uploader must see them while it queues).
template <typename R, typename Reply>
void SettleThenReply(fuse_req_t req, Mutation<R> m, Reply reply) {
  Filesystem& fs = Fs(req);
  FuseServer::Context* ctx = Ctx(req);
  if (!ctx->replies || !fs.WouldWait(m)) return reply(req, fs.Settle(std::move(m)));
  if (ctx->waiting.fetch_add(1) < ctx->max_waiting) {
    struct Leave {
      std::atomic<int>& n;
      ~Leave() { n.fetch_sub(1); }
    } leave{ctx->waiting};
    return reply(req, fs.Settle(std::move(m)));
  }
  ctx->waiting.fetch_sub(1);
  fs.ReleaseHeld(m);
  auto deadline = fs.SyncDeadline();  // from now, not from when a pool thread gets to it
  auto held = std::make_shared<Mutation<R>>(std::move(m));
  ctx->replies->Post([req, held, deadline, reply]() mutable {
    Guard(req, [&] { reply(req, Fs(req).Settle(std::move(*held), deadline)); });
  });
}

void ReplyEntry(fuse_req_t req, Mutation<Result<Entry>> m) {
  SettleThenReply(req, std::move(m),
                  [](fuse_req_t r, const Result<Entry>& e) { ReplyEntry(r, e); });
}

void ReplyErr(fuse_req_t req, Mutation<Status> m) {
  SettleThenReply(req, std::move(m), [](fuse_req_t r, const Status& s) { ReplyErr(r, s); });
}

// ---- pause points ------------------------------------------------------------
// While the MutationGate is closed (paused), a mutating request is not run on
// this FUSE worker thread, which must stay free to serve reads, but queued with
// copies of its arguments; after the resume it runs from the top again on a
// gate thread (and is queued again if another pause began meanwhile).
// Filesystem::EnterGate() is the real barrier; this only keeps workers free.
// The same holds and delays new data mutations while bounded lag throttles
// them (kFinish: close and fsync are never throttled).
template <typename F>
bool Held(fuse_req_t req, F&& again, MutationKind kind = MutationKind::kData) {
  MutationGate* gate = Fs(req).gate();
  return gate && gate->closed() && gate->DeferIfClosed(std::forward<F>(again), kind);
}

// A copy of a fuse_file_info that may be null.
struct FiCopy {
  explicit FiCopy(const fuse_file_info* fi) : present(fi != nullptr) {
    if (fi) value = *fi;
  }
  fuse_file_info* get() { return present ? &value : nullptr; }
  bool present;
  fuse_file_info value{};
};

void DoInit(void* userdata, fuse_conn_info* conn) {
  // Writeback cache: the kernel batches small writes into large WRITE
  // requests; safe because every change reaches the backing files only
  // through this daemon. Splice avoids copying data through user space.
  if (conn->capable & FUSE_CAP_WRITEBACK_CACHE) conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE;
  if (conn->capable & FUSE_CAP_SPLICE_MOVE) conn->want |= FUSE_CAP_SPLICE_MOVE;
  if (conn->capable & FUSE_CAP_SPLICE_READ) conn->want |= FUSE_CAP_SPLICE_READ;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  if (conn->capable & FUSE_CAP_READDIRPLUS_AUTO) conn->want |= FUSE_CAP_READDIRPLUS_AUTO;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  conn->want &= ~FUSE_CAP_POSIX_LOCKS;  // locks stay local to the kernel
  conn->want &= ~FUSE_CAP_FLOCK_LOCKS;
  auto* ctx = static_cast<FuseServer::Context*>(userdata);
  if (ctx->acl) {
    // With default_permissions alone the kernel checks mode bits only and the
    // root daemon then acts, so an ACL entry that denies a user would be
    // ignored. With POSIX_ACL the kernel reads ACLs (getxattr
    // system.posix_acl_*) and enforces them; a default ACL is applied by the
    // backing filesystem on create, and the umask, which a default ACL
    // replaces, is left to us (DONT_MASK, Caller::umask).
    if (conn->capable & FUSE_CAP_POSIX_ACL) {
      conn->want |= FUSE_CAP_POSIX_ACL;
      if (conn->capable & FUSE_CAP_DONT_MASK) conn->want |= FUSE_CAP_DONT_MASK;
    } else {
      spdlog::error("the kernel does not support POSIX ACLs on FUSE: ACLs are not enforced");
    }
    ctx->dont_mask = (conn->want & FUSE_CAP_DONT_MASK) != 0;
  }
  if (!ctx->fs->options().writeback_cache) conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  // With the writeback cache the kernel keeps its own mtime for regular files.
  ctx->fs->SetKernelOwnsMtime((conn->want & FUSE_CAP_WRITEBACK_CACHE) != 0);
  conn->max_write = 1024 * 1024;
  conn->max_readahead = 1024 * 1024;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  // The daemon applies the umask the kernel already applied; its own is 0.
  conn->time_gran = 1;
}

void DoLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, [&] {
    auto e = Fs(req).Lookup(parent, name);
    if (!e.ok() && e.status().code() == ENOENT && Ctx(req)->timeout > 0) {
      // Negative entry: the kernel caches the absence for the timeout.
      fuse_entry_param p;
      memset(&p, 0, sizeof p);
      p.entry_timeout = Ctx(req)->timeout;
      fuse_reply_entry(req, &p);
      return;
    }
    ReplyEntry(req, e);
  });
}

void DoForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Fs(req).Forget(ino, nlookup);
  fuse_reply_none(req);
}

void DoForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) Fs(req).Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void DoGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, [&] {
    auto st = Fs(req).GetAttr(ino, Fh(fi));
    if (!st.ok()) return ReplyErr(req, st.status());
    fuse_reply_attr(req, &st.value(), Ctx(req)->timeout);
  });
}

void DoSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
               fuse_file_info* fi) {
  Guard(req, [&] {
    if (Held(req, [req, ino, a = *attr, to_set, f = FiCopy(fi)]() mutable {
          DoSetattr(req, ino, &a, to_set, f.get());
        }))
      return;
    SettleThenReply(req, Fs(req).SetAttr(CallerOf(req), ino, *attr, to_set, Fh(fi)),
                    [](fuse_req_t r, const Result<struct stat>& st) {
                      if (!st.ok()) return ReplyErr(r, st.status());
                      fuse_reply_attr(r, &st.value(), Ctx(r)->timeout);
                    });
  });
}

void DoReadlink(fuse_req_t req, fuse_ino_t ino) {
  Guard(req, [&] {
    auto t = Fs(req).ReadLink(ino);
    if (!t.ok()) return ReplyErr(req, t.status());
    fuse_reply_readlink(req, t->c_str());
  });
}

void DoMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  Guard(req, [&] {
    if (Held(req, [=, n = std::string(name)] { DoMknod(req, parent, n.c_str(), mode, rdev); }))
      return;
    ReplyEntry(req, Fs(req).MkNod(CallerOf(req), parent, name, mode, rdev));
  });
}

void DoMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  Guard(req, [&] {
    if (Held(req, [=, n = std::string(name)] { DoMkdir(req, parent, n.c_str(), mode); })) return;
    ReplyEntry(req, Fs(req).MkDir(CallerOf(req), parent, name, mode));
  });
}

void DoSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  Guard(req, [&] {
    if (Held(req, [=, l = std::string(link), n = std::string(name)] {
          DoSymlink(req, l.c_str(), parent, n.c_str());
        }))
      return;
    ReplyEntry(req, Fs(req).Symlink(CallerOf(req), link, parent, name));
  });
}

void DoLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name) {
  Guard(req, [&] {
    if (Held(req, [=, n = std::string(name)] { DoLink(req, ino, parent, n.c_str()); })) return;
    ReplyEntry(req, Fs(req).Link(CallerOf(req), ino, parent, name));
  });
}

void DoUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, [&] {
    if (Held(req, [=, n = std::string(name)] { DoUnlink(req, parent, n.c_str()); })) return;
    ReplyErr(req, Fs(req).Unlink(CallerOf(req), parent, name));
  });
}

void DoRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, [&] {
    if (Held(req, [=, n = std::string(name)] { DoRmdir(req, parent, n.c_str()); })) return;
    ReplyErr(req, Fs(req).Rmdir(CallerOf(req), parent, name));
  });
}

void DoRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  Guard(req, [&] {
    if (Held(req, [=, n = std::string(name), nn = std::string(newname)] {
          DoRename(req, parent, n.c_str(), newparent, nn.c_str(), flags);
        }))
      return;
    ReplyErr(req, Fs(req).Rename(CallerOf(req), parent, name, newparent, newname, flags));
  });
}

void SetOpenFlags(fuse_req_t req, fuse_file_info* fi, const FileHandle& fh) {
  // Data changes only through this daemon, so cached pages stay valid.
  fi->keep_cache = 1;
  // Closing a read-only descriptor needs no journal work: skip FLUSH.
  fi->noflush = !fh.writable;
}

void DoOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, [&] {
    bool truncating = (fi->flags & O_ACCMODE) != O_RDONLY && (fi->flags & O_TRUNC);
    if (truncating && Held(req, [req, ino, f = *fi]() mutable { DoOpen(req, ino, &f); })) return;
    auto fh = Fs(req).Open(CallerOf(req), ino, fi->flags);
    if (!fh.ok()) return ReplyErr(req, fh.status());
    SetOpenFlags(req, fi, *fh.value());
    fi->fh = reinterpret_cast<uint64_t>(fh.value().get());
    if (fuse_reply_open(req, fi) == 0) fh.value().release();
  });
}

void DoCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  Guard(req, [&] {
    if (Held(req, [=, n = std::string(name), f = *fi]() mutable {
          DoCreate(req, parent, n.c_str(), mode, &f);
        }))
      return;
    SettleThenReply(req, Fs(req).Create(CallerOf(req), parent, name, mode, fi->flags),
                    [f = *fi](fuse_req_t rq, Result<Filesystem::Created> r) mutable {
                      if (!r.ok()) return ReplyErr(rq, r.status());
                      auto& [entry, fh] = r.value();
                      SetOpenFlags(rq, &f, *fh);
                      f.fh = reinterpret_cast<uint64_t>(fh.get());
                      fuse_entry_param p = EntryParam(rq, entry);
                      if (fuse_reply_create(rq, &p, &f) == 0) {
                        fh.release();
                      } else {
                        Fs(rq).Forget(p.ino, 1);
                      }
                    });
  });
}

void DoRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  // Zero-copy: libfuse splices from the backing fd into /dev/fuse.
  fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = Fh(fi)->fd.get();
  buf.buf[0].pos = off;
  fuse_reply_data(req, &buf, static_cast<fuse_buf_copy_flags>(0));  // SPLICE_MOVE never succeeds here
}

// The copy of a held write's data, counted against the gate's bound on held
// copies until it is freed.
struct HeldCopy {
  HeldCopy(MutationGate* g, size_t size) : gate(g), reserved(size), bytes(size, '\0') {}
  ~HeldCopy() { gate->ReturnHeldBytes(reserved); }
  HeldCopy(const HeldCopy&) = delete;
  HeldCopy& operator=(const HeldCopy&) = delete;
  MutationGate* gate;
  size_t reserved;
  std::string bytes;
};

// may_hold false: the gate was just consulted for this request (HeldWrite);
// Filesystem::Write still passes it.
void WriteBuf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in, off_t off, fuse_file_info* fi,
              bool may_hold);
void DoWriteBuf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in, off_t off, fuse_file_info* fi) {
  WriteBuf(req, ino, in, off, fi, /*may_hold=*/true);
}

// While paused: keeps a copy of the data (it lives in this worker's buffer or
// pipe) and defers the write, or writes the copy if the gate opened
// meanwhile; true when it took the request. False when the copy would pass
// the gate's bound on held copies: the caller then waits at the gate in this
// worker (in Filesystem::Write), which costs a worker, never memory or a
// failed write.
bool HeldWrite(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in, off_t off, fuse_file_info* fi,
               MutationGate* gate) {
  size_t size = fuse_buf_size(in);
  if (!gate->ReserveHeldBytes(size)) return false;
  auto data = std::make_shared<HeldCopy>(gate, size);
  fuse_bufvec mem = FUSE_BUFVEC_INIT(size);
  mem.buf[0].mem = data->bytes.data();
  ssize_t n = fuse_buf_copy(&mem, in, static_cast<fuse_buf_copy_flags>(0));
  if (n < 0) {
    ReplyErr(req, PosixError("write", static_cast<int>(-n)));
    return true;
  }
  data->bytes.resize(static_cast<size_t>(n));
  if (gate->DeferIfClosed([req, ino, data, off, f = *fi]() mutable {
        fuse_bufvec again = FUSE_BUFVEC_INIT(data->bytes.size());
        again.buf[0].mem = data->bytes.data();
        DoWriteBuf(req, ino, &again, off, &f);
      }))
    return true;
  // Opened meanwhile: write the copy now.
  fuse_bufvec again = FUSE_BUFVEC_INIT(data->bytes.size());
  again.buf[0].mem = data->bytes.data();
  // Not from the top: while slowed the gate stays "closed" for the fast path
  // but lets this request pass, and re-entering HeldWrite would copy again.
  WriteBuf(req, ino, &again, off, fi, /*may_hold=*/false);
  return true;
}

void WriteBuf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in, off_t off, fuse_file_info* fi,
              bool may_hold) {
  Guard(req, [&] {
    size_t size = fuse_buf_size(in);
    MutationGate* gate = Fs(req).gate();
    if (may_hold && gate && gate->closed() && HeldWrite(req, ino, in, off, fi, gate)) return;
    auto n = Fs(req).Write(CallerOf(req), Fh(fi), off, size, [&](int fd, off_t o) -> ssize_t {
      fuse_bufvec out = FUSE_BUFVEC_INIT(size);
      out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
      out.buf[0].fd = fd;
      out.buf[0].pos = o;
      return fuse_buf_copy(&out, in, static_cast<fuse_buf_copy_flags>(0));
    });
    if (!n.ok()) return ReplyErr(req, n.status());
    fuse_reply_write(req, n.value());
  });
}

void DoFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, [&] {
    if (Fs(req).gate() && Fs(req).gate()->closed() && Fs(req).NeedsGate(Fh(fi)) &&
        Held(
            req, [req, ino, f = *fi]() mutable { DoFlush(req, ino, &f); }, MutationKind::kFinish))
      return;
    ReplyErr(req, Fs(req).Flush(CallerOf(req), Fh(fi)));
  });
}

void DoRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  delete Fh(fi);  // closes the backing fd
  fuse_reply_err(req, 0);
}

void DoFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  Guard(req, [&] {
    if (Fs(req).gate() && Fs(req).gate()->closed() && Fs(req).NeedsGate(Fh(fi)) &&
        Held(
            req, [req, ino, datasync, f = *fi]() mutable { DoFsync(req, ino, datasync, &f); },
            MutationKind::kFinish))
      return;
    ReplyErr(req, Fs(req).Fsync(CallerOf(req), Fh(fi), datasync != 0));
  });
}

void DoOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, [&] {
    auto dh = Fs(req).OpenDir(CallerOf(req), ino);
    if (!dh.ok()) return ReplyErr(req, dh.status());
    fi->fh = reinterpret_cast<uint64_t>(dh.value().get());
    fi->keep_cache = 1;
    fi->cache_readdir = 0;
    if (fuse_reply_open(req, fi) == 0) dh.value().release();
  });
}

void ReadDirCommon(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi,
                   bool plus) {
  Guard(req, [&] {
    auto* dh = reinterpret_cast<DirHandle*>(fi->fh);
    std::string buf(size, '\0');
    size_t used = 0;
    Status s = Fs(req).ReadDir(
        dh, offset, [&](const char* name, ino_t d_ino, unsigned char type, int64_t next) -> bool {
          bool dots = strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
          size_t n;
          if (plus) {
            fuse_entry_param p;
            memset(&p, 0, sizeof p);
            Result<Entry> e = Status::Error(ENOENT, "");
            if (!dots) {
              e = Fs(req).Lookup(ino, name);
              if (e.ok()) p = EntryParam(req, e.value());
            }
            if (dots || !e.ok()) {
              // Attributes unknown (or raced with an unlink): a plain entry.
              p.attr.st_ino = d_ino;
              p.attr.st_mode = static_cast<mode_t>(type) << 12;
            }
            n = fuse_add_direntry_plus(req, buf.data() + used, size - used, name, &p, next);
            if (n > size - used) {
              if (!dots && e.ok()) Fs(req).Forget(p.ino, 1);  // not sent: undo the reference
              return false;
            }
          } else {
            struct stat st;
            memset(&st, 0, sizeof st);
            st.st_ino = d_ino;
            st.st_mode = static_cast<mode_t>(type) << 12;
            n = fuse_add_direntry(req, buf.data() + used, size - used, name, &st, next);
            if (n > size - used) return false;
          }
          used += n;
          return true;
        });
    if (!s.ok() && used == 0) return ReplyErr(req, s);
    fuse_reply_buf(req, buf.data(), used);
  });
}

void DoReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  ReadDirCommon(req, ino, size, off, fi, false);
}
void DoReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  ReadDirCommon(req, ino, size, off, fi, true);
}

void DoReleasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  delete reinterpret_cast<DirHandle*>(fi->fh);
  fuse_reply_err(req, 0);
}

void DoFsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  Guard(req, [&] {
    ReplyErr(req, Fs(req).FsyncDir(CallerOf(req), reinterpret_cast<DirHandle*>(fi->fh),
                                   datasync != 0));
  });
}

void DoStatfs(fuse_req_t req, fuse_ino_t ino) {
  Guard(req, [&] {
    auto sv = Fs(req).StatFs();
    if (!sv.ok()) return ReplyErr(req, sv.status());
    fuse_reply_statfs(req, &sv.value());
  });
}

// POSIX ACLs travel as these xattrs; they pass even with --xattr off.
bool IsAclName(const char* name) {
  return strcmp(name, "system.posix_acl_access") == 0 ||
         strcmp(name, "system.posix_acl_default") == 0;
}

// With --xattr off the handlers exist only for ACLs: anything else is
// unsupported (ENOTSUP, not ENOSYS, which would turn ACLs off in the kernel).
bool XattrRefused(fuse_req_t req, const char* name) {
  if (Fs(req).options().xattr || IsAclName(name)) return false;
  fuse_reply_err(req, EOPNOTSUPP);
  return true;
}

void DoSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags) {
  Guard(req, [&] {
    if (XattrRefused(req, name)) return;
    if (Held(req, [=, n = std::string(name), v = std::string(value, size)] {
          DoSetxattr(req, ino, n.c_str(), v.data(), v.size(), flags);
        }))
      return;
    ReplyErr(req, Fs(req).SetXattr(CallerOf(req), ino, name, std::string(value, size), flags));
  });
}

void DoGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Guard(req, [&] {
    if (XattrRefused(req, name)) return;
    auto v = Fs(req).GetXattr(ino, name, size);
    if (!v.ok()) return ReplyErr(req, v.status());
    if (size == 0) return (void)fuse_reply_xattr(req, v->size());
    fuse_reply_buf(req, v->data(), v->size());
  });
}

void DoListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Guard(req, [&] {
    auto v = Fs(req).ListXattr(CallerOf(req), ino, size, !Fs(req).options().xattr);
    if (!v.ok()) return ReplyErr(req, v.status());
    if (size == 0) return (void)fuse_reply_xattr(req, v->size());
    fuse_reply_buf(req, v->data(), v->size());
  });
}

void DoRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Guard(req, [&] {
    if (XattrRefused(req, name)) return;
    if (Held(req, [=, n = std::string(name)] { DoRemovexattr(req, ino, n.c_str()); })) return;
    ReplyErr(req, Fs(req).RemoveXattr(CallerOf(req), ino, name));
  });
}

void DoFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                 fuse_file_info* fi) {
  Guard(req, [&] {
    if (Held(req, [=, f = *fi]() mutable { DoFallocate(req, ino, mode, offset, length, &f); }))
      return;
    ReplyErr(req, Fs(req).Fallocate(CallerOf(req), Fh(fi), mode, offset, length));
  });
}

void DoCopyFileRange(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in,
                     fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out, size_t len,
                     int flags) {
  Guard(req, [&] {
    if (Held(req, [=, fin = *fi_in, fout = *fi_out]() mutable {
          DoCopyFileRange(req, ino_in, off_in, &fin, ino_out, off_out, &fout, len, flags);
        }))
      return;
    auto n = Fs(req).CopyFileRange(CallerOf(req), Fh(fi_in), off_in, Fh(fi_out), off_out, len,
                                   flags);
    if (!n.ok()) return ReplyErr(req, n.status());
    fuse_reply_write(req, n.value());
  });
}

void DoLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
  Guard(req, [&] {
    auto r = Fs(req).Lseek(Fh(fi), off, whence);
    if (!r.ok()) return ReplyErr(req, r.status());
    fuse_reply_lseek(req, r.value());
  });
}

// xattr: --xattr on, or ACLs, which the kernel reads and writes as xattrs.
fuse_lowlevel_ops MakeOps(bool xattr) {
  fuse_lowlevel_ops ops;
  memset(&ops, 0, sizeof ops);
  ops.init = DoInit;
  ops.lookup = DoLookup;
  ops.forget = DoForget;
  ops.forget_multi = DoForgetMulti;
  ops.getattr = DoGetattr;
  ops.setattr = DoSetattr;
  ops.readlink = DoReadlink;
  ops.mknod = DoMknod;
  ops.mkdir = DoMkdir;
  ops.symlink = DoSymlink;
  ops.link = DoLink;
  ops.unlink = DoUnlink;
  ops.rmdir = DoRmdir;
  ops.rename = DoRename;
  ops.open = DoOpen;
  ops.create = DoCreate;
  ops.read = DoRead;
  ops.write_buf = DoWriteBuf;
  ops.flush = DoFlush;
  ops.release = DoRelease;
  ops.fsync = DoFsync;
  ops.opendir = DoOpendir;
  ops.readdir = DoReaddir;
  ops.readdirplus = DoReaddirplus;
  ops.releasedir = DoReleasedir;
  ops.fsyncdir = DoFsyncdir;
  ops.statfs = DoStatfs;
  ops.fallocate = DoFallocate;
  ops.copy_file_range = DoCopyFileRange;
  ops.lseek = DoLseek;
  if (xattr) {
    // Without these the kernel answers ENOTSUP/ENODATA itself after the first
    // ENOSYS, and stops asking before every write (see README, "xattrs"). With
    // them it asks for security.capability before every write: the price
    // of --xattr on, and of ACLs on a shared mount.
    ops.setxattr = DoSetxattr;
    ops.getxattr = DoGetxattr;
    ops.listxattr = DoListxattr;
    ops.removexattr = DoRemovexattr;
  }
  return ops;
}

// True when -o allow_other or allow_root lets users other than the daemon's
// own reach the mount.
bool SharedWithOthers(const std::vector<std::string>& fuse_opts) {
  for (const std::string& opts : fuse_opts) {
    size_t start = 0;
    while (start <= opts.size()) {
      size_t end = opts.find(',', start);
      if (end == std::string::npos) end = opts.size();
      std::string_view o(opts.data() + start, end - start);
      if (o == "allow_other" || o == "allow_root") return true;
      start = end + 1;
    }
  }
  return false;
}

}  // namespace

Result<std::unique_ptr<FuseServer>> FuseServer::Mount(const FuseOptions& options,
                                                       Filesystem* fs) {
  std::unique_ptr<FuseServer> server(new FuseServer());
  server->ctx_ = new Context();
  server->ctx_->timeout = options.cache_timeout;
  server->ctx_->fs = fs;
  server->ctx_->acl = SharedWithOthers(options.fuse_opts);
  server->max_threads_ = options.max_threads;
  if (fs->options().waiter) {
    // Two workers are always left for reads and stats (see SettleThenReply).
    server->ctx_->max_waiting = std::max(1, static_cast<int>(options.max_threads) - 2);
    server->ctx_->replies = std::make_unique<ReplyPool>(4);
  }
  server->clone_fd_ = options.clone_fd;

  // The kernel checks permissions (default_permissions) against the caller:
  // the daemon runs as root and must not lend its rights to anyone.
  std::string opts = "default_permissions,subtype=scribefs,fsname=" + EscapeFuseOpt(options.fsname);
  for (const auto& o : options.fuse_opts) opts += "," + o;
  std::vector<std::string> argv_s = {"scribefs", "-o", opts};
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  fuse_lowlevel_ops ops = MakeOps(fs->options().xattr || server->ctx_->acl);
  fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, server->ctx_);
  fuse_opt_free_args(&args);
  if (!se) return Status::Error(EINVAL, "fuse: cannot create session (bad -o option? see above)");
  server->session_ = se;
  if (fuse_set_signal_handlers(se) != 0)
    return Status::Error(EIO, "fuse: cannot install signal handlers");
  server->signals_ = true;
  if (fuse_session_mount(se, options.mountpoint.c_str()) != 0)
    return Status::Error(EIO, "fuse: cannot mount on " + options.mountpoint +
                                  " (is /dev/fuse available and are you root?)");
  server->mounted_ = true;
  return server;
}

Status FuseServer::Run() {
  auto* se = static_cast<fuse_session*>(session_);
  fuse_loop_config* cfg = fuse_loop_cfg_create();
  if (!cfg) return Status::Error(ENOMEM, "fuse loop config");
  fuse_loop_cfg_set_clone_fd(cfg, clone_fd_ ? 1 : 0);
  fuse_loop_cfg_set_max_threads(cfg, max_threads_);
  fuse_loop_cfg_set_idle_threads(cfg, max_threads_ / 2 ? max_threads_ / 2 : 1);
  int rc = fuse_session_loop_mt(se, cfg);
  fuse_loop_cfg_destroy(cfg);
  ctx_->replies.reset();  // the posted replies, while the session still exists
  if (rc != 0 && rc != SIGTERM && rc != SIGINT && rc != SIGHUP)
    return Status::Error(rc < 0 ? -rc : EIO, "fuse loop ended with an error");
  return Status::Ok();
}

FuseServer::~FuseServer() {
  Unmount();
  if (session_) {
    auto* se = static_cast<fuse_session*>(session_);
    if (signals_) fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
  }
  delete ctx_;
}

bool FuseServer::Exiting() const {
  return session_ && fuse_session_exited(static_cast<fuse_session*>(session_)) != 0;
}

void FuseServer::Exit() {
  if (session_) fuse_session_exit(static_cast<fuse_session*>(session_));
}

void FuseServer::Unmount() {
  if (mounted_ && session_) fuse_session_unmount(static_cast<fuse_session*>(session_));
  mounted_ = false;
}

}  // namespace scribefs
