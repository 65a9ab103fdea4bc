// The decisions of uploader/history_recorder.h, without a target: which seqs
// entries get in a segment, and which entries change the history's tree.
#include "uploader/history_recorder.h"

#include <gtest/gtest.h>

#include "tests/history/history_test_util.h"

namespace scribefs {
namespace {

using history::testing::DirPut;
using history::testing::FilePut;

TEST(AssignSeqs, EachEntryAtItsSeqWhenThereIsRoom) {
  EXPECT_EQ(AssignSeqs({3, 5, 9}, 1, 10), (std::vector<uint64_t>{3, 5, 9}));
  EXPECT_EQ(AssignSeqs({}, 1, 10), std::vector<uint64_t>{});
}

TEST(AssignSeqs, SharedSeqsMoveBackIntoFreeOnes) {
  // Two entries for one rename record (seq 7), and an entry that arrived
  // after a later one: arrival order is kept, never above the seq stood for.
  EXPECT_EQ(AssignSeqs({7, 7}, 1, 10), (std::vector<uint64_t>{6, 7}));
  EXPECT_EQ(AssignSeqs({9, 4}, 1, 10), (std::vector<uint64_t>{3, 4}));
}

TEST(AssignSeqs, NoRoomBelowPushesEntriesAboveTheSegment) {
  // Segment [7, 7] for two entries of seq 7: the second waits for the next.
  EXPECT_EQ(AssignSeqs({7, 7}, 7, 7), (std::vector<uint64_t>{7, 8}));
  // Entries of seqs below the segment (an earlier daemon's) start at lo.
  EXPECT_EQ(AssignSeqs({2, 3}, 10, 20), (std::vector<uint64_t>{10, 11}));
  // Strictly increasing whatever the input.
  auto a = AssignSeqs({5, 5, 5, 1, 9, 9}, 4, 9);
  for (size_t i = 1; i < a.size(); ++i) EXPECT_LT(a[i - 1], a[i]);
  EXPECT_GE(a[0], 4u);
}

TEST(AssignSeqs, FloorsKeepEntriesAboveAMark) {
  // Arrived: a state after mark 20 (seq 25), then one at the mark (seq 15).
  // Without floors the first would stand at 14, before the mark.
  EXPECT_EQ(AssignSeqs({25, 15}, 1, 30), (std::vector<uint64_t>{14, 15}));
  EXPECT_EQ(AssignSeqs({15, 25}, 1, 30, {10, 20}), (std::vector<uint64_t>{15, 25}));
  // Crowded just above a mark: pushed up, never down to it.
  EXPECT_EQ(AssignSeqs({22, 21}, 1, 30, {20, 20}), (std::vector<uint64_t>{21, 22}));
}

TEST(OrderAtMarks, EntriesAtAMarkGoBeforeLaterOnesInArrivalOrderOtherwise) {
  // Marks 20 and 40. Arrival: a pass at mark 40 (seq 35), one at mark 20
  // (seq 18), a live one (seq 50), one more at mark 20 (seq 12), another
  // at mark 40 (seq 21).
  MarkedOrder o = OrderAtMarks({35, 18, 50, 12, 21}, {20, 40});
  EXPECT_EQ(o.order, (std::vector<size_t>{1, 3, 0, 4, 2}));
  EXPECT_EQ(o.floors, (std::vector<uint64_t>{0, 0, 20, 20, 40}));
  // Without marks: arrival order, no floors.
  MarkedOrder none = OrderAtMarks({35, 18}, {});
  EXPECT_EQ(none.order, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(none.floors, (std::vector<uint64_t>{0, 0}));
  // A mark's own seq is at the mark.
  EXPECT_EQ(OrderAtMarks({21, 20}, {20}).order, (std::vector<size_t>{1, 0}));
  // Together: replay at each mark sees exactly the states at or before it.
  std::vector<uint64_t> pref = {35, 18, 50, 12, 21};
  std::vector<uint64_t> ordered;
  for (size_t i : o.order) ordered.push_back(pref[i]);
  auto seqs = AssignSeqs(ordered, 1, 60, o.floors);
  for (size_t k = 0; k < seqs.size(); ++k) {
    for (uint64_t mark : {20u, 40u})
      EXPECT_EQ(seqs[k] <= mark, ordered[k] <= mark) << "seq " << ordered[k] << " at " << seqs[k];
  }
}

TEST(EntryChangesTree, PutOfTheSameStateChangesNothing) {
  history::DigestReplayer r;
  r.Apply(FilePut(1, "a", "x"));
  r.Apply(DirPut(2, "d"));
  r.Apply(FilePut(3, "d/f", "y"));
  const history::DigestTree& t = r.tree();
  EXPECT_FALSE(EntryChangesTree(t, FilePut(9, "a", "x", 1000)));  // same mtime as at seq 1
  EXPECT_TRUE(EntryChangesTree(t, FilePut(9, "a", "z", 1000)));
  EXPECT_TRUE(EntryChangesTree(t, FilePut(9, "a", "x", 2000))) << "another mtime";
  EXPECT_TRUE(EntryChangesTree(t, FilePut(9, "b", "x")));

  history::Entry del;
  del.op = history::EntryOp::kDelete;
  del.path = "d";
  EXPECT_TRUE(EntryChangesTree(t, del));
  del.path = "nothing";
  EXPECT_FALSE(EntryChangesTree(t, del));
  del.path = "d/f";
  EXPECT_TRUE(EntryChangesTree(t, del));

  history::Entry ren;
  ren.op = history::EntryOp::kRename;
  ren.path = "x";
  ren.new_path = "y";
  EXPECT_FALSE(EntryChangesTree(t, ren)) << "neither name is in history";
  ren.new_path = "d";
  EXPECT_TRUE(EntryChangesTree(t, ren)) << "clears the destination";
}

// A directory renamed here whose pass stored `kept` below it: history's
// other paths below it go (topmost only: a delete removes what is below).
TEST(PathsToSweep, WhatThePassDidNotStoreBelowTheDirectory) {
  history::DigestReplayer r;
  r.Apply(DirPut(1, "d"));
  r.Apply(FilePut(2, "d/f", "x"));
  r.Apply(FilePut(3, "d/g", "y"));  // deleted before the pass: not kept
  r.Apply(DirPut(4, "d/s"));
  r.Apply(FilePut(5, "d/s/h", "z"));
  r.Apply(FilePut(6, "d-other", "w"));  // beside d, not below it
  r.Apply(FilePut(7, "e/f", "v"));
  const history::DigestTree& t = r.tree();
  EXPECT_EQ(PathsToSweep(t, "d", {"d/f", "d/g", "d/s", "d/s/h"}), std::vector<std::string>{});
  EXPECT_EQ(PathsToSweep(t, "d", {"d/f", "d/s", "d/s/h", "d/new"}),
            std::vector<std::string>{"d/g"});
  EXPECT_EQ(PathsToSweep(t, "d", {"d/f"}), (std::vector<std::string>{"d/g", "d/s"}));
  EXPECT_EQ(PathsToSweep(t, "d", {"d/s"}), (std::vector<std::string>{"d/f", "d/g", "d/s/h"}));
  EXPECT_EQ(PathsToSweep(t, "d", {}), (std::vector<std::string>{"d/f", "d/g", "d/s"}));
  EXPECT_EQ(PathsToSweep(t, "absent", {}), std::vector<std::string>{});
}

}  // namespace
}  // namespace scribefs
