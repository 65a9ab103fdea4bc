// The test stores of memory_store.h: MemoryStore under the store contract
// (alone, and wrapped in a FaultyStore that injects nothing), and what the
// FaultyStore injects.
#include "tests/uploader/memory_store.h"

#include <gtest/gtest.h>

#include <chrono>

#include "tests/uploader/store_contract.h"

namespace scribefs {
namespace {

class MemoryMaker : public StoreMaker {
 public:
  explicit MemoryMaker(bool wrapped) : wrapped_(wrapped) {}
  std::unique_ptr<ObjectStore> Make() override {
    auto store = std::make_unique<MemoryStore>();
    if (!wrapped_) return store;
    return std::make_unique<FaultyStore>(std::move(store));
  }

 private:
  bool wrapped_;
};

INSTANTIATE_TEST_SUITE_P(
    Memory, StoreContract,
    ::testing::Values(StoreParam{"memory", [] { return std::make_unique<MemoryMaker>(false); }},
                      StoreParam{"faulty_memory",
                                 [] { return std::make_unique<MemoryMaker>(true); }}),
    StoreParamName);

class FaultyStoreTest : public ::testing::Test {
 protected:
  FaultyStoreTest() {
    auto mem = std::make_unique<MemoryStore>();
    mem_ = mem.get();
    store_ = std::make_unique<FaultyStore>(std::move(mem));
  }
  MemoryStore* mem_;
  std::unique_ptr<FaultyStore> store_;
};

TEST_F(FaultyStoreTest, InjectedErrorsReplaceTheRequestAsManyTimesAsAsked) {
  store_->Inject("Put", FaultyStore::Unavailable(), 2);
  for (int i = 0; i < 2; ++i) {
    auto put = store_->Put("k", Payload::FromMemory("x"), {});
    ASSERT_FALSE(put.ok());
    EXPECT_TRUE(put.status().retryable());
    EXPECT_EQ(put.status().info().http_status, 503);
    EXPECT_TRUE(mem_->Keys().empty()) << "an error answer stores nothing";
  }
  EXPECT_TRUE(store_->Put("k", Payload::FromMemory("x"), {}).ok());
  EXPECT_EQ(store_->calls("Put"), 3);
  // Other operations and keys are not affected.
  store_->Inject("Get", FaultyStore::Forbidden(), 1, FaultyStore::Fault::kError, "secret/");
  EXPECT_TRUE(store_->Get("k").ok());
  EXPECT_TRUE(store_->Head("k").ok());
  auto denied = store_->Get("secret/x");
  EXPECT_EQ(denied.status().code(), EACCES);
  EXPECT_FALSE(denied.status().retryable());
}

TEST_F(FaultyStoreTest, CutUploadsStoreButLoseTheAnswer) {
  store_->Inject("Put", FaultyStore::NetworkError(), 1, FaultyStore::Fault::kCutAfter);
  auto put = store_->Put("k", Payload::FromMemory("stored"), {});
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().error_code(), "CurlError");
  auto v = mem_->Newest("k");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->body, "stored");
}

TEST_F(FaultyStoreTest, DelaysEveryCallOfAnOperation) {
  store_->Delay("Head", std::chrono::milliseconds(50));
  ASSERT_TRUE(store_->Put("k", Payload::FromMemory("x"), {}).ok());
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(store_->Head("k").ok());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(50));
  store_->Clear();
  t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(store_->Head("k").ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(50));
}

}  // namespace
}  // namespace scribefs
