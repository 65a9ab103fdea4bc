#include "uploader/store_factory.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <map>

#include "tests/uploader/test_util.h"
#include "uploader/credentials.h"

namespace scribefs {
namespace {

TEST(ParseTargetUrl, S3) {
  auto t = ParseTargetUrl("s3://my-bucket");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->kind, TargetUrl::Kind::kS3);
  EXPECT_EQ(t->bucket, "my-bucket");
  EXPECT_EQ(t->prefix, "");
  t = ParseTargetUrl("s3://my-bucket/backups/host1/");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->bucket, "my-bucket");
  EXPECT_EQ(t->prefix, "backups/host1");
}

TEST(ParseTargetUrl, File) {
  auto t = ParseTargetUrl("file:///srv/backup");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->kind, TargetUrl::Kind::kFile);
  EXPECT_EQ(t->path, "/srv/backup");
  t = ParseTargetUrl("file:///srv/my%20backup");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->path, "/srv/my backup");
  t = ParseTargetUrl("file://localhost/srv/b");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->path, "/srv/b");
}

TEST(ParseTargetUrl, ClearErrors) {
  struct Case {
    const char* url;
    const char* mentions;
  } cases[] = {
      {"/srv/backup", "no scheme"},
      {"s3://", "no bucket"},
      {"s3:///prefix", "no bucket"},
      {"s3://ab", "not a valid bucket name"},
      {"s3://bad bucket", "not a valid bucket name"},
      {"s3://bucket/a/../b", "\"..\""},
      {"s3://bucket/a?x=1", "query"},
      {"file://relative/path", "absolute"},
      {"file:///", "refusing"},
      {"file:///a%zz", "%-escape"},
      {"http://example.com/x", "unknown scheme"},
  };
  for (const auto& c : cases) {
    auto t = ParseTargetUrl(c.url);
    ASSERT_FALSE(t.ok()) << c.url;
    EXPECT_EQ(t.status().code(), EINVAL);
    EXPECT_NE(t.status().message().find(c.mentions), std::string::npos)
        << c.url << " -> " << t.status().message();
    EXPECT_NE(t.status().message().find("s3://BUCKET"), std::string::npos);
  }
}

GetEnvFn FakeEnv(std::map<std::string, std::string> vars) {
  auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [shared](const char* name) -> const char* {
    auto it = shared->find(name);
    return it == shared->end() ? nullptr : it->second.c_str();
  };
}

TEST(OpenStore, FileTarget) {
  testing_util::TempDir dir;
  auto store = OpenStore("file://" + dir.path() + "/t", {});
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ((*store)->Describe(), "file://" + dir.path() + "/t");
  TargetOptions with_endpoint;
  with_endpoint.endpoint = "http://127.0.0.1:1";
  EXPECT_FALSE(OpenStore("file://" + dir.path() + "/t", with_endpoint).ok());
}

TEST(OpenStore, S3TargetNeedsCredentials) {
  testing_util::TempDir home;
  TargetOptions options;
  options.getenv_fn = FakeEnv({{"HOME", home.path()}});
  auto store = OpenStore("s3://bucket/prefix", options);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("AWS_ACCESS_KEY_ID"), std::string::npos)
      << store.status().message();

  options.getenv_fn = FakeEnv({{"AWS_ACCESS_KEY_ID", "AK"}, {"AWS_SECRET_ACCESS_KEY", "SECRET"}});
  options.endpoint = "http://127.0.0.1:9";
  store = OpenStore("s3://bucket/prefix", options);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ((*store)->Describe(), "s3://bucket/prefix");

  options.endpoint = "127.0.0.1:9";
  store = OpenStore("s3://bucket", options);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("http://"), std::string::npos);
}

TEST(Credentials, EnvironmentFirst) {
  auto c = LoadCredentials(FakeEnv({{"AWS_ACCESS_KEY_ID", "AK"},
                                    {"AWS_SECRET_ACCESS_KEY", "SK"},
                                    {"AWS_SESSION_TOKEN", "TOK"}}));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->access_key_id, "AK");
  EXPECT_EQ(c->secret_access_key, "SK");
  EXPECT_EQ(c->session_token, "TOK");
  auto half = LoadCredentials(FakeEnv({{"AWS_ACCESS_KEY_ID", "AK"}}));
  EXPECT_FALSE(half.ok());
}

TEST(Credentials, SharedFileAndProfile) {
  testing_util::TempDir dir;
  std::string file = dir.path() + "/credentials";
  ASSERT_TRUE(testing_util::WriteFile(file,
                                      "# comment\n"
                                      "[default]\n"
                                      "aws_access_key_id = DEFAULTAK\n"
                                      "aws_secret_access_key = defaultsecret\n"
                                      "\n"
                                      "[backup]\n"
                                      "aws_access_key_id=BACKUPAK\n"
                                      "aws_secret_access_key=backupsecret\n"
                                      "aws_session_token = tok\n"
                                      "[broken]\n"
                                      "aws_access_key_id = BROKENKEYVALUE\n")
                  .valid());
  auto d = LoadCredentials(FakeEnv({{"AWS_SHARED_CREDENTIALS_FILE", file}}));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->access_key_id, "DEFAULTAK");
  EXPECT_EQ(d->secret_access_key, "defaultsecret");
  auto b =
      LoadCredentials(FakeEnv({{"AWS_SHARED_CREDENTIALS_FILE", file}, {"AWS_PROFILE", "backup"}}));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->access_key_id, "BACKUPAK");
  EXPECT_EQ(b->session_token, "tok");
  auto missing =
      LoadCredentials(FakeEnv({{"AWS_SHARED_CREDENTIALS_FILE", file}, {"AWS_PROFILE", "nope"}}));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("[nope]"), std::string::npos);
  auto broken =
      LoadCredentials(FakeEnv({{"AWS_SHARED_CREDENTIALS_FILE", file}, {"AWS_PROFILE", "broken"}}));
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.status().message().find("BROKENKEYVALUE"), std::string::npos)
      << "no values in errors";
  // ~/.aws/credentials by default.
  ASSERT_EQ(mkdir((dir.path() + "/.aws").c_str(), 0700), 0);
  ASSERT_EQ(rename(file.c_str(), (dir.path() + "/.aws/credentials").c_str()), 0);
  auto home = LoadCredentials(FakeEnv({{"HOME", dir.path()}}));
  ASSERT_TRUE(home.ok()) << home.status().ToString();
  EXPECT_EQ(home->access_key_id, "DEFAULTAK");
}

std::string Profile(const std::string& key, const std::string& secret, const std::string& token) {
  return "[default]\naws_access_key_id = " + key + "\naws_secret_access_key = " + secret +
         "\naws_session_token = " + token + "\n";
}

// STS session credentials expire; whoever renews them rewrites the shared
// file, and a running daemon must follow it.
TEST(CredentialsProvider, FollowsTheSharedFile) {
  testing_util::TempDir dir;
  std::string file = dir.path() + "/credentials";
  ASSERT_TRUE(testing_util::WriteFile(file, Profile("AK1", "secret1", "token1")).valid());
  auto p = CredentialsProvider::Load(FakeEnv({{"AWS_SHARED_CREDENTIALS_FILE", file}}));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE((*p)->CanChange());
  sigv4::Credentials first = (*p)->Current();
  EXPECT_EQ(first.access_key_id, "AK1");
  EXPECT_EQ(first.session_token, "token1");
  // Renewed the way tools do it: a new file renamed over the old one.
  ASSERT_TRUE(testing_util::WriteFile(file + ".new", Profile("AK2", "secret2", "token2")).valid());
  ASSERT_EQ(rename((file + ".new").c_str(), file.c_str()), 0);
  EXPECT_EQ((*p)->Current().access_key_id, "AK2");
  EXPECT_EQ((*p)->Current().session_token, "token2");

  // Rewritten within one mtime tick: the stat shows nothing, a rejection
  // by the server makes it read again.
  sigv4::Credentials used = (*p)->Current();
  ASSERT_TRUE(testing_util::RewriteKeepingMtime(file, Profile("AK3", "secret3", "token3")));
  EXPECT_EQ((*p)->Current().access_key_id, "AK2") << "the stat alone cannot see it";
  EXPECT_TRUE((*p)->RefreshAfterRejection(used));
  EXPECT_EQ((*p)->Current().access_key_id, "AK3");
  EXPECT_EQ((*p)->Current().session_token, "token3");
  // Nothing new: the rejection stands.
  EXPECT_FALSE((*p)->RefreshAfterRejection((*p)->Current()));

  // Caught half written (or broken): the last good credentials stay.
  ASSERT_TRUE(testing_util::WriteFile(file + ".new", "[default]\naws_acc").valid());
  ASSERT_EQ(rename((file + ".new").c_str(), file.c_str()), 0);
  EXPECT_EQ((*p)->Current().access_key_id, "AK3");
  ASSERT_EQ(unlink(file.c_str()), 0);
  EXPECT_EQ((*p)->Current().access_key_id, "AK3");
  ASSERT_TRUE(testing_util::WriteFile(file, Profile("AK4", "secret4", "")).valid());
  EXPECT_EQ((*p)->Current().access_key_id, "AK4");
}

TEST(CredentialsProvider, EnvironmentCredentialsAreFixed) {
  auto p = CredentialsProvider::Load(
      FakeEnv({{"AWS_ACCESS_KEY_ID", "AK"}, {"AWS_SECRET_ACCESS_KEY", "SK"}}));
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE((*p)->CanChange());
  EXPECT_EQ((*p)->Current().access_key_id, "AK");
  EXPECT_FALSE((*p)->RefreshAfterRejection((*p)->Current()));
  EXPECT_FALSE(CredentialsProvider::Load(FakeEnv({{"AWS_ACCESS_KEY_ID", "AK"}})).ok());
}

}  // namespace
}  // namespace scribefs
