// The ObjectStore contract: one suite of tests that every store must pass.
// A test binary instantiates it with a StoreParam that makes its store:
//   INSTANTIATE_TEST_SUITE_P(Local, StoreContract, ::testing::Values(param));
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>

#include "uploader/object_store.h"

namespace scribefs {

// Makes fresh, empty stores for one test, and cleans up after it.
class StoreMaker {
 public:
  virtual ~StoreMaker() = default;
  // A new empty store, or nullptr after ADD_FAILURE() explaining why.
  virtual std::unique_ptr<ObjectStore> Make() = 0;
  // Called after the test with the store Make() returned.
  virtual void Cleanup(ObjectStore* store) {}
};

struct StoreParam {
  std::string name;
  std::function<std::unique_ptr<StoreMaker>()> maker;
};

inline std::string StoreParamName(const ::testing::TestParamInfo<StoreParam>& info) {
  return info.param.name;
}
inline void PrintTo(const StoreParam& p, std::ostream* os) { *os << p.name; }

class StoreContract : public ::testing::TestWithParam<StoreParam> {
 protected:
  void SetUp() override;
  void TearDown() override;

  std::unique_ptr<StoreMaker> maker_;
  std::unique_ptr<ObjectStore> store_;
};

}  // namespace scribefs
