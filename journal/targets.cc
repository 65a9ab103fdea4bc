#include "journal/targets.h"

#include <set>

#include "journal/journal.h"
#include "journal/reader.h"
#include "journal/record.h"
#include "journal/sqlite_util.h"
#include "journal/upload_state.h"

namespace scribefs {
namespace {

Result<std::vector<TargetEntry>> ReadTargets(sqlite3* db) {
  auto st = Prepare(db, "SELECT id, name, url, added_ns, settings FROM targets ORDER BY id");
  if (!st.ok()) return st.status();
  std::vector<TargetEntry> out;
  int rc;
  while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
    TargetEntry e;
    e.id = sqlite3_column_int64(st->get(), 0);
    e.name = reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 1));
    e.url = reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 2));
    e.added_ns = sqlite3_column_int64(st->get(), 3);
    e.settings = reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 4));
    out.push_back(std::move(e));
  }
  if (rc != SQLITE_DONE) return SqliteError("targets", db, rc);
  return out;
}

Status RunWithId(sqlite3* db, const char* sql, int64_t id) {
  auto st = Prepare(db, sql);
  if (!st.ok()) return st.status();
  sqlite3_bind_int64(st->get(), 1, id);
  int rc = sqlite3_step(st->get());
  if (rc != SQLITE_DONE) return SqliteError("targets", db, rc);
  return Status::Ok();
}

// Forgets everything of target `id`: what it holds, its rows, and itself.
// Then every record with rows is folded over the targets that remain: one a
// removed target held back (its state was the record's own, pending, so it
// had no row) is finished when the others have finished it, and with one
// target left the record's state is that target's.
Status RemoveTarget(sqlite3* db, int64_t id) {
  SCRIBEFS_RETURN_IF_ERROR(RunWithId(db, "DELETE FROM targets WHERE id=?1", id));
  SCRIBEFS_RETURN_IF_ERROR(RunWithId(db, "DELETE FROM objects WHERE target=?1", id));
  auto ids = TargetIds(db);
  if (!ids.ok()) return ids.status();
  auto st = Prepare(db, "SELECT DISTINCT seq FROM target_records ORDER BY seq");
  if (!st.ok()) return st.status();
  auto seqs = ReadInt64Column(db, st->get(), "target_records");
  if (!seqs.ok()) return seqs.status();
  for (int64_t seq : *seqs) SCRIBEFS_RETURN_IF_ERROR(FoldRecordTargets(db, seq, *ids, nullptr));
  return Status::Ok();
}

}  // namespace

TargetPlan PlanTargets(const std::vector<TargetEntry>& existing,
                       const std::vector<TargetSpec>& configured) {
  TargetPlan plan;
  std::set<int64_t> matched;
  std::vector<const TargetSpec*> unmatched;
  for (const TargetSpec& c : configured) {
    const TargetEntry* same = nullptr;
    for (const TargetEntry& e : existing)
      if (e.name == c.name && e.url == c.url) same = &e;
    if (same) {
      plan.keep.push_back({same->id, c});
      matched.insert(same->id);
    } else {
      unmatched.push_back(&c);
    }
  }
  // A URL known under another name: the same target, renamed.
  for (const TargetSpec* c : unmatched) {
    const TargetEntry* by_url = nullptr;
    for (const TargetEntry& e : existing)
      if (!matched.count(e.id) && e.url == c->url) by_url = &e;
    if (by_url) {
      plan.keep.push_back({by_url->id, *c});
      matched.insert(by_url->id);
    } else {
      plan.add.push_back(*c);
    }
  }
  for (const TargetEntry& e : existing)
    if (!matched.count(e.id)) plan.remove.push_back(e.id);
  return plan;
}

Result<std::vector<TargetEntry>> Targets::List(JournalReader& reader) {
  if (reader.schema_version() < 5) return std::vector<TargetEntry>();
  return ReadTargets(reader.db_.get());
}

Result<TargetSync> Targets::Sync(Journal& journal, const std::vector<TargetSpec>& configured) {
  TargetSync out;
  Status s = journal.Apply([&](sqlite3* db) -> Status {
    out = TargetSync();
    auto existing = ReadTargets(db);
    if (!existing.ok()) return existing.status();
    TargetPlan plan = PlanTargets(*existing, configured);
    for (int64_t id : plan.remove) {
      for (const TargetEntry& e : *existing)
        if (e.id == id) out.removed.push_back(e);
      SCRIBEFS_RETURN_IF_ERROR(RemoveTarget(db, id));
    }
    // Names move in two steps, so that two targets may swap theirs.
    for (const auto& k : plan.keep)
      SCRIBEFS_RETURN_IF_ERROR(
          RunWithId(db, "UPDATE targets SET name='~renaming~' || id WHERE id=?1", k.id));
    for (const auto& k : plan.keep) {
      auto st = Prepare(db, "UPDATE targets SET name=?2, settings=?3 WHERE id=?1");
      if (!st.ok()) return st.status();
      sqlite3_bind_int64(st->get(), 1, k.id);
      sqlite3_bind_text(st->get(), 2, k.spec.name.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(st->get(), 3, k.spec.settings.c_str(), -1, SQLITE_TRANSIENT);
      int rc = sqlite3_step(st->get());
      if (rc != SQLITE_DONE) return SqliteError("targets", db, rc);
    }
    for (const TargetSpec& a : plan.add) {
      auto st =
          Prepare(db, "INSERT INTO targets(name, url, added_ns, settings) VALUES(?1, ?2, ?3, ?4)");
      if (!st.ok()) return st.status();
      sqlite3_bind_text(st->get(), 1, a.name.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(st->get(), 2, a.url.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64(st->get(), 3, NowNs());
      sqlite3_bind_text(st->get(), 4, a.settings.c_str(), -1, SQLITE_TRANSIENT);
      int rc = sqlite3_step(st->get());
      if (rc != SQLITE_DONE) return SqliteError("targets", db, rc);
      int64_t id = sqlite3_last_insert_rowid(db);
      // An id may be reused after a removal: nothing of an earlier target
      // may be taken for what the new one holds.
      SCRIBEFS_RETURN_IF_ERROR(RunWithId(db, "DELETE FROM objects WHERE target=?1", id));
      SCRIBEFS_RETURN_IF_ERROR(RunWithId(db, "DELETE FROM target_records WHERE target=?1", id));
    }
    auto now = ReadTargets(db);
    if (!now.ok()) return now.status();
    // With several targets the uploader's counters are each target's
    // ("uploader.ID", journal/upload_state.cc): the note of the one target
    // there was is nobody's now.
    if (now->size() > 1)
      SCRIBEFS_RETURN_IF_ERROR(Exec(db, "DELETE FROM meta WHERE key='uploader'"));
    for (const TargetSpec& c : configured)
      for (const TargetEntry& e : *now)
        if (e.name == c.name) out.targets.push_back(e);
    for (const TargetSpec& a : plan.add)
      for (const TargetEntry& e : *now)
        if (e.name == a.name) out.added.push_back(e);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

}  // namespace scribefs
