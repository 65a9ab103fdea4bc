#include "tests/uploader/store_contract.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "tests/uploader/test_util.h"
#include "uploader/digest.h"

namespace scribefs {
namespace {

using testing_util::Blob;
using testing_util::Md5Hex;
using testing_util::Sha256Hex;
using testing_util::TempDir;

const Metadata kMeta = {
    {"mode", "33188"}, {"uid", "1000"}, {"gid", "1000"}, {"mtime", "1700000000"}};

std::vector<std::string> Keys(const std::vector<ListEntry>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back(e.key + (e.is_prefix ? " (prefix)" : ""));
  return out;
}

#define ASSERT_STORE_OK(expr)                                        \
  do {                                                               \
    const auto& _r = (expr);                                         \
    ASSERT_TRUE(_r.ok()) << #expr << ": " << _r.status().ToString(); \
  } while (0)

}  // namespace

void StoreContract::SetUp() {
  maker_ = GetParam().maker();
  ASSERT_NE(maker_, nullptr);
  store_ = maker_->Make();
  ASSERT_NE(store_, nullptr) << "could not make the store under test";
}

void StoreContract::TearDown() {
  if (maker_ && store_) maker_->Cleanup(store_.get());
}

TEST_P(StoreContract, PutGetHeadRoundTrip) {
  auto put = store_->Put("a/b/c.txt", Payload::FromMemory("hello"), kMeta);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->etag, "5d41402abc4b2a76b9719d911017c592");  // S3 single-part ETag = MD5
  EXPECT_EQ(put->md5_hex, "5d41402abc4b2a76b9719d911017c592");
  EXPECT_EQ(put->sha256_hex, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
  EXPECT_EQ(put->size, 5u);

  auto got = store_->Get("a/b/c.txt");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->body, "hello");
  EXPECT_EQ(got->info.size, 5u);
  EXPECT_EQ(got->info.etag, put->etag);
  EXPECT_EQ(got->info.metadata, kMeta);
  EXPECT_GT(got->info.mtime, 1600000000);

  auto head = store_->Head("a/b/c.txt");
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  EXPECT_EQ(head->size, 5u);
  EXPECT_EQ(head->etag, put->etag);
  EXPECT_EQ(head->metadata, kMeta);
}

TEST_P(StoreContract, EmptyObject) {
  auto put = store_->Put("empty", Payload::FromMemory(""), {});
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->etag, "d41d8cd98f00b204e9800998ecf8427e");
  auto got = store_->Get("empty");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->body, "");
  EXPECT_EQ(got->info.size, 0u);
}

TEST_P(StoreContract, PutFromFileRange) {
  TempDir dir;
  std::string data = Blob(300000, 1);
  UniqueFd fd = testing_util::WriteFile(dir.path() + "/src", data);
  ASSERT_TRUE(fd.valid());
  auto put = store_->Put("file", Payload::FromFile(fd.get(), 1000, 200000), {});
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  std::string expect = data.substr(1000, 200000);
  EXPECT_EQ(put->etag, Md5Hex(expect));
  EXPECT_EQ(put->sha256_hex, Sha256Hex(expect));
  auto got = store_->Get("file");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(got->body == expect);
}

// A file deleted while (or before) it is read for an upload is not stored:
// SourceChanged (retryable; the uploader then finds the path gone).
TEST_P(StoreContract, DeletedSourceFileIsNotStored) {
  TempDir dir;
  std::string data = Blob(kMinPartSize + 1000, 2);
  UniqueFd fd = testing_util::WriteFile(dir.path() + "/doomed", data);
  ASSERT_TRUE(fd.valid());
  ASSERT_EQ(unlink((dir.path() + "/doomed").c_str()), 0);
  auto put = store_->Put("doomed", Payload::FromFile(fd.get(), 0, data.size()), {});
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().error_code(), "SourceChanged") << put.status().ToString();
  EXPECT_TRUE(put.status().retryable());
  EXPECT_TRUE(store_->Head("doomed").status().not_found());

  auto id = store_->CreateMultipartUpload("doomed-mp", {});
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  auto part = store_->UploadPart("doomed-mp", *id, 1, Payload::FromFile(fd.get(), 0, kMinPartSize));
  EXPECT_FALSE(part.ok());
  EXPECT_EQ(part.status().error_code(), "SourceChanged") << part.status().ToString();
  EXPECT_TRUE(store_->AbortMultipartUpload("doomed-mp", *id).ok());
}

TEST_P(StoreContract, RangeGet) {
  std::string data = Blob(1000, 2);
  ASSERT_STORE_OK(store_->Put("r", Payload::FromMemory(data), {}));
  auto mid = store_->Get("r", ByteRange{10, 20});
  ASSERT_TRUE(mid.ok()) << mid.status().ToString();
  EXPECT_EQ(mid->body, data.substr(10, 20));
  EXPECT_EQ(mid->info.size, 1000u);  // the whole object's size
  auto tail = store_->Get("r", ByteRange{990, 100});
  ASSERT_TRUE(tail.ok()) << tail.status().ToString();
  EXPECT_EQ(tail->body, data.substr(990));
  auto past = store_->Get("r", ByteRange{1000, 5});
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.status().code(), EINVAL) << past.status().ToString();
  EXPECT_EQ(past.status().error_code(), "InvalidRange");
  EXPECT_FALSE(past.status().retryable());
}

TEST_P(StoreContract, GetToFile) {
  TempDir dir;
  std::string data = Blob(100000, 3);
  ASSERT_STORE_OK(store_->Put("g", Payload::FromMemory(data), kMeta));
  std::string path = dir.path() + "/out";
  UniqueFd out(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  ASSERT_TRUE(out.valid());
  auto info = store_->GetToFile("g", out.get());
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->size, data.size());
  EXPECT_EQ(info->metadata, kMeta);
  auto part = store_->GetToFile("g", out.get(), ByteRange{5, 10});  // appended
  ASSERT_TRUE(part.ok()) << part.status().ToString();
  out.Reset();
  EXPECT_TRUE(testing_util::ReadFile(path) == data + data.substr(5, 10));

  UniqueFd out2(open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
  auto missing = store_->GetToFile("nope", out2.get());
  EXPECT_TRUE(missing.status().not_found()) << missing.status().ToString();
  out2.Reset();
  EXPECT_EQ(testing_util::ReadFile(path), "");  // an error body never lands in the file
}

// The version reads with an empty version id are the plain reads; a version
// the store does not have is an error (LocalStore keeps no versions at all:
// ENOTSUP; an unversioned S3 bucket: the server's error).
TEST_P(StoreContract, VersionReadsOfTheCurrentVersion) {
  TempDir dir;
  std::string data = Blob(5000, 4);
  auto put = store_->Put("v/x", Payload::FromMemory(data), kMeta);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  auto got = store_->GetVersion("v/x", "");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(got->body == data);
  EXPECT_EQ(got->info.etag, put->etag);
  EXPECT_EQ(got->info.metadata, kMeta);
  auto range = store_->GetVersion("v/x", "", ByteRange{100, 50});
  ASSERT_TRUE(range.ok()) << range.status().ToString();
  EXPECT_EQ(range->body, data.substr(100, 50));
  auto head = store_->HeadVersion("v/x", "");
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  EXPECT_EQ(head->size, data.size());
  EXPECT_EQ(head->etag, put->etag);
  std::string path = dir.path() + "/out";
  UniqueFd out(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  ASSERT_TRUE(out.valid());
  auto info = store_->GetVersionToFile("v/x", "", out.get());
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  out.Reset();
  EXPECT_TRUE(testing_util::ReadFile(path) == data);

  auto missing = store_->GetVersion("v/x", "no-such-version-0123456789");
  ASSERT_FALSE(missing.ok());
  EXPECT_FALSE(missing.status().retryable()) << missing.status().ToString();
  EXPECT_FALSE(store_->HeadVersion("v/x", "no-such-version-0123456789").ok());
}

TEST_P(StoreContract, MissingObjectIsNotFound) {
  auto head = store_->Head("no/such/key");
  ASSERT_FALSE(head.ok());
  EXPECT_TRUE(head.status().not_found()) << head.status().ToString();
  EXPECT_EQ(head.status().code(), ENOENT);
  EXPECT_FALSE(head.status().retryable());
  auto get = store_->Get("no/such/key");
  ASSERT_FALSE(get.ok());
  EXPECT_TRUE(get.status().not_found());
  EXPECT_EQ(get.status().error_code(), "NoSuchKey");
}

TEST_P(StoreContract, OverwriteReplacesDataAndMetadata) {
  ASSERT_STORE_OK(store_->Put("o", Payload::FromMemory("first"), kMeta));
  Metadata m2 = {{"mode", "33261"}};
  auto put = store_->Put("o", Payload::FromMemory("second!"), m2);
  ASSERT_TRUE(put.ok());
  auto got = store_->Get("o");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->body, "second!");
  EXPECT_EQ(got->info.metadata, m2);
  EXPECT_EQ(got->info.etag, Md5Hex("second!"));
}

TEST_P(StoreContract, DeleteAndDeleteMany) {
  for (const char* k : {"d/1", "d/2", "d/3", "e", "f/g/h"}) {
    ASSERT_STORE_OK(store_->Put(k, Payload::FromMemory(k), {}));
  }
  StoreStatus del = store_->Delete("e");
  ASSERT_TRUE(del.ok()) << del.ToString();
  EXPECT_TRUE(store_->Head("e").status().not_found());
  EXPECT_TRUE(store_->Delete("e").ok());  // deleting a missing key succeeds, as in S3
  StoreStatus many = store_->DeleteMany({"d/1", "d/2", "d/3", "f/g/h", "never/there"});
  ASSERT_TRUE(many.ok()) << many.ToString();
  auto all = store_->ListAll({});
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_TRUE(all->empty()) << ::testing::PrintToString(Keys(*all));
  EXPECT_TRUE(store_->DeleteMany({}).ok());
}

TEST_P(StoreContract, ListWithPagingPrefixAndDelimiter) {
  std::vector<std::string> keys = {"d1/a", "d1/b", "d1/sub/c", "d2/x", "top1", "top2"};
  for (int i = 0; i < 20; ++i)
    keys.push_back("many/k" + std::string(i < 10 ? "0" : "") + std::to_string(i));
  for (const auto& k : keys) ASSERT_STORE_OK(store_->Put(k, Payload::FromMemory(k), {}));
  std::sort(keys.begin(), keys.end());

  ListOptions all;
  all.page_size = 7;  // forces several pages
  auto listed = store_->ListAll(all);
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  EXPECT_EQ(Keys(*listed), keys);
  for (const auto& e : *listed) {
    EXPECT_EQ(e.size, e.key.size()) << e.key;
    EXPECT_EQ(e.etag, Md5Hex(e.key)) << e.key;
    EXPECT_FALSE(e.is_prefix);
  }

  ListOptions many;
  many.prefix = "many/";
  many.page_size = 5;
  auto m = store_->ListAll(many);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->size(), 20u);

  ListOptions top;
  top.delimiter = "/";
  top.page_size = 2;
  auto t = store_->ListAll(top);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(Keys(*t), (std::vector<std::string>{"d1/ (prefix)", "d2/ (prefix)", "many/ (prefix)",
                                                "top1", "top2"}));

  ListOptions d1;
  d1.prefix = "d1/";
  d1.delimiter = "/";
  auto d = store_->ListAll(d1);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(Keys(*d), (std::vector<std::string>{"d1/a", "d1/b", "d1/sub/ (prefix)"}));

  ListOptions partial;
  partial.prefix = "to";
  auto p = store_->ListAll(partial);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(Keys(*p), (std::vector<std::string>{"top1", "top2"}));

  ListOptions none;
  none.prefix = "zzz/";
  auto n = store_->ListAll(none);
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE(n->empty());

  int seen = 0;
  StoreStatus stop = store_->List(all, [&](const ListEntry&) { return ++seen < 3; });
  EXPECT_TRUE(stop.ok());
  EXPECT_EQ(seen, 3);
}

TEST_P(StoreContract, DirectoryMarkers) {
  auto put = store_->Put("dir/", Payload::FromMemory(""), kMeta);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  auto head = store_->Head("dir/");
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  EXPECT_EQ(head->size, 0u);
  EXPECT_EQ(head->metadata, kMeta);
  ASSERT_STORE_OK(store_->Put("dir/file", Payload::FromMemory("x"), {}));
  ASSERT_STORE_OK(store_->Put("dir/empty-sub/", Payload::FromMemory(""), {}));
  auto listed = store_->ListAll({});
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(Keys(*listed), (std::vector<std::string>{"dir/", "dir/empty-sub/", "dir/file"}));
  ASSERT_TRUE(store_->Delete("dir/").ok());
  EXPECT_TRUE(store_->Head("dir/").status().not_found());
  EXPECT_TRUE(store_->Head("dir/file").ok());  // objects under a marker stay
  ASSERT_TRUE(store_->Delete("dir/empty-sub/").ok());
  listed = store_->ListAll({});
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(Keys(*listed), (std::vector<std::string>{"dir/file"}));
}

TEST_P(StoreContract, CopyKeepsOrReplacesMetadataAndHonoursIfMatch) {
  std::string data = Blob(70000, 4);
  auto src = store_->Put("src/obj", Payload::FromMemory(data), kMeta);
  ASSERT_TRUE(src.ok());

  auto keep = store_->Copy("src/obj", "dst/kept");
  ASSERT_TRUE(keep.ok()) << keep.status().ToString();
  EXPECT_EQ(keep->etag, src->etag);
  auto got = store_->Get("dst/kept");
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->body == data);
  EXPECT_EQ(got->info.metadata, kMeta);

  CopyOptions replace;
  replace.metadata = Metadata{{"mode", "33261"}, {"mtime", "1"}};
  replace.if_match = src->etag;
  auto rep = store_->Copy("src/obj", "dst/replaced", replace);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  auto head = store_->Head("dst/replaced");
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->metadata, *replace.metadata);
  EXPECT_EQ(head->size, data.size());

  CopyOptions stale;
  stale.if_match = "0123456789abcdef0123456789abcdef";
  auto bad = store_->Copy("src/obj", "dst/stale", stale);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(bad.status().precondition_failed()) << bad.status().ToString();
  EXPECT_EQ(bad.status().error_code(), "PreconditionFailed");
  EXPECT_FALSE(bad.status().retryable());
  EXPECT_TRUE(store_->Head("dst/stale").status().not_found());

  auto missing = store_->Copy("src/none", "dst/none");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(missing.status().not_found()) << missing.status().ToString();
}

TEST_P(StoreContract, MultipartUpload) {
  TempDir dir;
  std::string data = Blob(kMinPartSize + 12345, 5);
  UniqueFd fd = testing_util::WriteFile(dir.path() + "/big", data);
  ASSERT_TRUE(fd.valid());
  auto id = store_->CreateMultipartUpload("big/file", kMeta);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  auto p1 = store_->UploadPart("big/file", *id, 1, Payload::FromFile(fd.get(), 0, kMinPartSize));
  ASSERT_TRUE(p1.ok()) << p1.status().ToString();
  EXPECT_EQ(p1->etag, Md5Hex(data.substr(0, kMinPartSize)));
  EXPECT_EQ(p1->sha256_hex, Sha256Hex(data.substr(0, kMinPartSize)));
  std::string rest = data.substr(kMinPartSize);
  auto p2 = store_->UploadPart("big/file", *id, 2, Payload::FromMemory(rest));
  ASSERT_TRUE(p2.ok()) << p2.status().ToString();

  auto uploads = store_->ListMultipartUploads("big/");
  ASSERT_TRUE(uploads.ok()) << uploads.status().ToString();
  ASSERT_EQ(uploads->size(), 1u);
  EXPECT_EQ((*uploads)[0].key, "big/file");
  EXPECT_EQ((*uploads)[0].upload_id, *id);

  auto done = store_->CompleteMultipartUpload("big/file", *id, {{1, p1->etag}, {2, p2->etag}});
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  // S3's multipart ETag: MD5 of the parts' binary MD5s, "-" part count.
  std::string both;
  for (const std::string& part : {data.substr(0, kMinPartSize), rest}) {
    auto raw = Md5(part);
    ASSERT_TRUE(raw.ok());
    both += *raw;
  }
  EXPECT_EQ(done->etag, Md5Hex(both) + "-2");
  EXPECT_EQ(done->size, data.size());
  auto head = store_->Head("big/file");
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->etag, done->etag);
  EXPECT_EQ(head->metadata, kMeta);
  auto got = store_->Get("big/file");
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->body == data);
  uploads = store_->ListMultipartUploads("big/");
  ASSERT_TRUE(uploads.ok());
  EXPECT_TRUE(uploads->empty());
}

// Bytes read on demand from a PayloadSource (a frozen file at a checkpoint's
// mark): a Put and a part store exactly them; a source that fails is
// SourceChanged (retryable) and stores nothing.
class StringSource : public PayloadSource {
 public:
  explicit StringSource(std::string data, bool fail = false)
      : data_(std::move(data)), fail_(fail) {}
  Result<size_t> Pread(void* buf, size_t n, uint64_t off) const override {
    if (fail_) return Status::Error(ECANCELED, "capture abandoned");
    if (off >= data_.size()) return size_t{0};
    n = std::min<size_t>(n, data_.size() - off);
    memcpy(buf, data_.data() + off, n);
    return n;
  }

 private:
  std::string data_;
  bool fail_;
};

TEST_P(StoreContract, PutAndPartFromASource) {
  const std::string data = Blob(kMinPartSize + 4321, 9);
  StringSource src(data);
  auto put = store_->Put("src/small", Payload::FromSource(&src, 100, 5000), kMeta);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->sha256_hex, Sha256Hex(data.substr(100, 5000)));
  EXPECT_EQ(put->etag, Md5Hex(data.substr(100, 5000)));
  auto got = store_->Get("src/small");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(got->body == data.substr(100, 5000));

  auto id = store_->CreateMultipartUpload("src/big", kMeta);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  auto p1 = store_->UploadPart("src/big", *id, 1, Payload::FromSource(&src, 0, kMinPartSize));
  ASSERT_TRUE(p1.ok()) << p1.status().ToString();
  EXPECT_EQ(p1->sha256_hex, Sha256Hex(data.substr(0, kMinPartSize)));
  auto p2 = store_->UploadPart("src/big", *id, 2,
                               Payload::FromSource(&src, kMinPartSize, data.size() - kMinPartSize));
  ASSERT_TRUE(p2.ok()) << p2.status().ToString();
  auto done = store_->CompleteMultipartUpload("src/big", *id, {{1, p1->etag}, {2, p2->etag}});
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  got = store_->Get("src/big");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(got->body == data);

  StringSource gone(data, /*fail=*/true);
  auto failed = store_->Put("src/gone", Payload::FromSource(&gone, 0, 1000), kMeta);
  ASSERT_FALSE(failed.ok());
  EXPECT_TRUE(failed.status().retryable()) << failed.status().ToString();
  EXPECT_EQ(failed.status().error_code(), "SourceChanged") << failed.status().ToString();
  EXPECT_TRUE(store_->Head("src/gone").status().not_found());
}

TEST_P(StoreContract, UploadPartCopyWithIfMatch) {
  std::string base = Blob(kMinPartSize + 1000, 6);
  auto put = store_->Put("base", Payload::FromMemory(base), kMeta);
  ASSERT_TRUE(put.ok());

  auto id = store_->CreateMultipartUpload("derived", kMeta);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  auto stale = store_->UploadPartCopy("derived", *id, 1, "base", ByteRange{0, kMinPartSize},
                                      "ffffffffffffffffffffffffffffffff");
  ASSERT_FALSE(stale.ok());
  EXPECT_TRUE(stale.status().precondition_failed()) << stale.status().ToString();
  EXPECT_FALSE(stale.status().retryable());

  auto p1 =
      store_->UploadPartCopy("derived", *id, 1, "base", ByteRange{0, kMinPartSize}, put->etag);
  ASSERT_TRUE(p1.ok()) << p1.status().ToString();
  EXPECT_EQ(p1->etag, Md5Hex(base.substr(0, kMinPartSize)));
  auto p2 = store_->UploadPart("derived", *id, 2, Payload::FromMemory("new tail"));
  ASSERT_TRUE(p2.ok()) << p2.status().ToString();
  auto done = store_->CompleteMultipartUpload("derived", *id, {{1, p1->etag}, {2, p2->etag}});
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  auto got = store_->Get("derived");
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->body == base.substr(0, kMinPartSize) + "new tail");
  EXPECT_EQ(got->info.metadata, kMeta);
}

TEST_P(StoreContract, AbortAndListMultipartUploads) {
  auto a = store_->CreateMultipartUpload("up/a", {});
  auto b = store_->CreateMultipartUpload("up/b", {});
  auto c = store_->CreateMultipartUpload("other/c", {});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ASSERT_STORE_OK(store_->UploadPart("up/a", *a, 1, Payload::FromMemory("part")));

  auto listed = store_->ListMultipartUploads("up/");
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  std::set<std::pair<std::string, std::string>> got;
  for (const auto& u : *listed) got.insert({u.key, u.upload_id});
  EXPECT_EQ(got, (std::set<std::pair<std::string, std::string>>{{"up/a", *a}, {"up/b", *b}}));
  auto everything = store_->ListMultipartUploads("");
  ASSERT_TRUE(everything.ok());
  EXPECT_EQ(everything->size(), 3u);

  StoreStatus abort = store_->AbortMultipartUpload("up/a", *a);
  ASSERT_TRUE(abort.ok()) << abort.ToString();
  auto again = store_->AbortMultipartUpload("up/a", *a);
  EXPECT_TRUE(again.not_found()) << again.ToString();
  EXPECT_EQ(again.error_code(), "NoSuchUpload");
  auto late = store_->UploadPart("up/a", *a, 2, Payload::FromMemory("late"));
  EXPECT_TRUE(late.status().not_found()) << late.status().ToString();
  listed = store_->ListMultipartUploads("up/");
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].upload_id, *b);
  EXPECT_TRUE(store_->AbortMultipartUpload("up/b", *b).ok());
  EXPECT_TRUE(store_->AbortMultipartUpload("other/c", *c).ok());
  EXPECT_TRUE(store_->Head("up/a").status().not_found());
}

TEST_P(StoreContract, CompleteRejectsSmallNonLastPart) {
  auto id = store_->CreateMultipartUpload("small", {});
  ASSERT_TRUE(id.ok());
  auto p1 = store_->UploadPart("small", *id, 1, Payload::FromMemory("tiny one"));
  auto p2 = store_->UploadPart("small", *id, 2, Payload::FromMemory("tiny two"));
  ASSERT_TRUE(p1.ok() && p2.ok());
  auto done = store_->CompleteMultipartUpload("small", *id, {{1, p1->etag}, {2, p2->etag}});
  ASSERT_FALSE(done.ok());
  EXPECT_EQ(done.status().code(), EINVAL) << done.status().ToString();
  EXPECT_EQ(done.status().error_code(), "EntityTooSmall");
  EXPECT_FALSE(done.status().retryable());
  EXPECT_TRUE(store_->AbortMultipartUpload("small", *id).ok());
}

TEST_P(StoreContract, RejectsBadKeysWithoutTouchingTheTarget) {
  uint64_t before = store_->stats().requests;
  for (const char* key : {"", "/abs", "a//b", "../x", "a/../b", "a/./b", "./a", "..", "a/.."}) {
    auto put = store_->Put(key, Payload::FromMemory("x"), {});
    ASSERT_FALSE(put.ok()) << "key \"" << key << "\"";
    EXPECT_EQ(put.status().code(), EINVAL) << put.status().ToString();
    EXPECT_FALSE(put.status().retryable());
    EXPECT_FALSE(store_->Head(key).ok());
    EXPECT_FALSE(store_->Delete(key).ok());
  }
  Metadata bad = {{"Mode", "1"}};
  EXPECT_EQ(store_->Put("k", Payload::FromMemory("x"), bad).status().code(), EINVAL);
  Metadata bad_value = {{"mode", "line\nbreak"}};
  EXPECT_EQ(store_->Put("k", Payload::FromMemory("x"), bad_value).status().code(), EINVAL);
  // S3Store counts a request only when one is sent.
  (void)before;
}

TEST_P(StoreContract, KeysWithSpecialCharacters) {
  const std::vector<std::string> keys = {"sp ace/\xc3\xbc \xc3\xb1.txt", "plus+sign&amp=?#%25.bin",
                                         "tilde~(paren)[br]!*'$,;@",
                                         "\xe6\x97\xa5\xe6\x9c\xac/\xe8\xaa\x9e"};
  for (const auto& k : keys) {
    auto put = store_->Put(k, Payload::FromMemory(k), {{"mode", "33188"}});
    ASSERT_TRUE(put.ok()) << k << ": " << put.status().ToString();
    auto got = store_->Get(k);
    ASSERT_TRUE(got.ok()) << k << ": " << got.status().ToString();
    EXPECT_EQ(got->body, k);
  }
  auto listed = store_->ListAll({});
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  std::vector<std::string> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(Keys(*listed), sorted);
  ASSERT_TRUE(store_->Copy(keys[1], "copy of " + keys[1]).ok());
  EXPECT_TRUE(store_->DeleteMany(keys).ok());
  EXPECT_TRUE(store_->Delete("copy of " + keys[1]).ok());
  listed = store_->ListAll({});
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty()) << ::testing::PrintToString(Keys(*listed));
}

TEST_P(StoreContract, StatsCountTraffic) {
  StoreStats before = store_->stats();
  ASSERT_STORE_OK(store_->Put("s", Payload::FromMemory(std::string(4096, 'x')), {}));
  ASSERT_STORE_OK(store_->Get("s"));
  StoreStats after = store_->stats();
  EXPECT_GE(after.requests, before.requests + 2);
  EXPECT_GE(after.bytes_sent, before.bytes_sent + 4096);
  EXPECT_GE(after.bytes_received, before.bytes_received + 4096);
}

}  // namespace scribefs
