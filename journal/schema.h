// The journal's schema: its versions and the forward migrations between them.
//
// This is the one place that creates or alters the journal's tables (records,
// meta, objects, targets, target_records). A journal carries its version in PRAGMA user_version and
// its identity in PRAGMA application_id. Opening one applies, in one transaction, every migration
// step above its version; a journal written by a newer scribefs (a version above kSchemaVersion) is
// refused and left untouched.
//
// To change the schema: append a step to kMigrations (never edit a released
// step: journals in the field were built by it) and document the version in
// README.md ("Journal schema").
#pragma once

#include <sqlite3.h>

#include <span>
#include <string>

#include "common/status.h"

namespace scribefs {

// "SCRF": identifies a scribefs journal.
inline constexpr int kApplicationId = 0x53435246;

// One forward migration: the SQL that takes a journal at version to - 1 to
// version `to` (step 1 creates the tables in an empty file).
struct Migration {
  int to;
  const char* sql;
};

// Every step, in order; step i has to == i + 1.
std::span<const Migration> Migrations();

// The conditions of the partial indexes records_unfinished (records not yet
// stored: pending, uploading, failed) and records_control (pause, resume,
// checkpoint) as a journal of `version` spells them. SQLite uses a partial
// index only for a query that names its condition in the same words.
std::string UnfinishedCondition(int version);
std::string ControlCondition(int version);

// The version this build writes: the last step's.
inline constexpr int kSchemaVersion = 6;

// Checks that db (the file at path) is an empty SQLite file or a scribefs
// journal of version <= kSchemaVersion, switches it to WAL, and migrates it
// to kSchemaVersion in one transaction. Errors name the file; a foreign or
// newer file is refused before anything is written to it.
Status EnsureSchema(sqlite3* db, const std::string& path);

}  // namespace scribefs
