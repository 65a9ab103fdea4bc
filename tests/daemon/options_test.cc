// The scribefs command line as deployments use it: -o key=value as fstab and
// mount.fuse3 pass options, the --config file (unknown keys refused with the
// nearest valid one, DATADIR and MOUNTPOINT in it, NAME found in the config
// directory), --version.
#include "daemon/options.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "daemon/daemon.h"

namespace scribefs {
namespace {

class OptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/scribefs-options-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (const auto& f : files_) unlink(f.c_str());
    rmdir(dir_.c_str());
    unsetenv("SCRIBEFS_CONFIG_DIR");
  }
  std::string Write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    files_.push_back(path);
    return path;
  }
  // ParseCommandLine on {"scribefs", args...}.
  std::optional<int> Parse(std::vector<std::string> args, Config& cfg) {
    args.insert(args.begin(), "scribefs");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    return ParseCommandLine(static_cast<int>(argv.size()), argv.data(), cfg);
  }
  std::string dir_;
  std::vector<std::string> files_;
};

TEST_F(OptionsTest, DashOKeysThatNameOptionsBecomeThoseOptions) {
  auto out = ExpandArgs({"/d", "/m", "-o",
                         "rw,nosuid,target=s3://b/p,endpoint=http://h:1,"
                         "allow_other,state_dir=/s,no_default_excludes"},
                        {"target", "endpoint", "state-dir", "no-default-excludes"});
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(*out, (std::vector<std::string>{
                      "/d", "/m", "--target=s3://b/p", "--endpoint=http://h:1", "--state-dir=/s",
                      "--no-default-excludes", "-o", "rw,nosuid,allow_other"}));
}

TEST_F(OptionsTest, EveryOptionIsReachableThroughDashO) {
  Config cfg;
  ASSERT_EQ(Parse({"/d", "/m", "-o",
                   "target=file:///t,workers=8,mode=sync,stop_timeout=3,exclude=*.tmp,"
                   "default_permissions",
                   "-oforeground,log-level=debug"},
                  cfg),
            std::nullopt);
  EXPECT_EQ(cfg.datadir, "/d");
  EXPECT_EQ(cfg.mountpoint, "/m");
  EXPECT_EQ(cfg.target, "file:///t");
  EXPECT_EQ(cfg.workers, 8);
  EXPECT_EQ(cfg.mode, "sync");
  EXPECT_EQ(cfg.stop_timeout, 3.0);
  EXPECT_EQ(cfg.excludes, std::vector<std::string>{"*.tmp"});
  EXPECT_TRUE(cfg.foreground);
  EXPECT_EQ(cfg.log_level, "debug");
  EXPECT_EQ(cfg.fuse_opts, std::vector<std::string>{"default_permissions"});
}

TEST_F(OptionsTest, DashOValuesAreCheckedLikeFlags) {
  Config cfg;
  EXPECT_EQ(Parse({"/d", "-o", "workers=0"}, cfg), kExitUsage);
  Config cfg2;
  EXPECT_EQ(Parse({"/d", "-o", "mode=later"}, cfg2), kExitUsage);
}

// --bwlimit (issue 15): a rate or a timetable, on the command line, through
// -o (whose commas the timetable shares) and in the config file.
TEST_F(OptionsTest, BwlimitEverywhere) {
  Config flag;
  ASSERT_EQ(Parse({"/d", "--bwlimit", "08:00,512K 19:00,10M 23:00,off"}, flag), std::nullopt);
  EXPECT_EQ(flag.bwlimit, "08:00,512K 19:00,10M 23:00,off");
  Config dash_o;
  ASSERT_EQ(Parse({"/d", "-o", "allow_other,bwlimit=08:00,512K 19:00,off,workers=2,ro"}, dash_o),
            std::nullopt);
  EXPECT_EQ(dash_o.bwlimit, "08:00,512K 19:00,off");
  EXPECT_EQ(dash_o.workers, 2);
  EXPECT_EQ(dash_o.fuse_opts, (std::vector<std::string>{"allow_other", "ro"}));
  Config plain;
  ASSERT_EQ(Parse({"/d", "-o", "bwlimit=2M,default_permissions"}, plain), std::nullopt);
  EXPECT_EQ(plain.bwlimit, "2M");
  EXPECT_EQ(plain.fuse_opts, std::vector<std::string>{"default_permissions"});
  std::string path = Write("bw.conf", "bwlimit = \"Mon-08:00,1M Fri-18:00,off\"\n");
  Config file;
  ASSERT_EQ(Parse({"/d", "--config", path}, file), std::nullopt);
  EXPECT_EQ(file.bwlimit, "Mon-08:00,1M Fri-18:00,off");
  Config bad;
  EXPECT_EQ(Parse({"/d", "--bwlimit", "25:00,1M"}, bad), kExitUsage);
  Config bad_o;
  EXPECT_EQ(Parse({"/d", "-o", "bwlimit=12X"}, bad_o), kExitUsage);
}

TEST_F(OptionsTest, UnknownConfigKeyIsAnErrorNamingTheNearestKey) {
  std::string path = Write("bad.conf", "target = \"file:///t\"\nwrokers = 2\n");
  std::string datadir, mountpoint;
  Status s = CheckConfigFile(path, {"target", "workers", "mode"}, &datadir, &mountpoint);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'wrokers'"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("did you mean 'workers'"), std::string::npos) << s.message();
  Config cfg;
  EXPECT_EQ(Parse({"/d", "--config", path}, cfg), kExitUsage);
}

TEST_F(OptionsTest, KeysInASectionAreUnknownToo) {
  std::string path = Write("section.conf", "[replication]\nworkers = 2\n");
  Config cfg;
  EXPECT_EQ(Parse({"/d", "--config", path}, cfg), kExitUsage);
}

TEST_F(OptionsTest, ConfigGivesDatadirAndMountpoint) {
  std::string path =
      Write("full.conf", "datadir = \"/srv/data\"\nmountpoint = \"/srv/mnt\"\nworkers = 3\n");
  Config cfg;
  ASSERT_EQ(Parse({"--config", path}, cfg), std::nullopt);
  EXPECT_EQ(cfg.datadir, "/srv/data");
  EXPECT_EQ(cfg.mountpoint, "/srv/mnt");
  EXPECT_EQ(cfg.workers, 3);
  // The command line wins over the file.
  Config over;
  ASSERT_EQ(Parse({"/other", "--config", path, "--workers", "5"}, over), std::nullopt);
  EXPECT_EQ(over.datadir, "/other");
  EXPECT_EQ(over.workers, 5);
}

TEST_F(OptionsTest, DatadirIsRequiredSomewhere) {
  std::string path = Write("nodir.conf", "workers = 3\n");
  Config cfg;
  EXPECT_EQ(Parse({"--config", path}, cfg), kExitUsage);
}

TEST_F(OptionsTest, ConfigNameIsFoundInTheConfigDirectory) {
  Write("backup.conf", "DATADIR = \"/srv/b\"\ntarget = \"file:///t\"\n");
  setenv("SCRIBEFS_CONFIG_DIR", dir_.c_str(), 1);
  EXPECT_EQ(ConfigDir(), dir_);
  Config cfg;
  ASSERT_EQ(Parse({"--config", "backup"}, cfg), std::nullopt);
  EXPECT_EQ(cfg.datadir, "/srv/b");
  EXPECT_EQ(cfg.target, "file:///t");
  Config via_o;  // as a mount helper passes it
  ASSERT_EQ(Parse({"/srv/b", "-o", "config=backup"}, via_o), std::nullopt);
  EXPECT_EQ(via_o.target, "file:///t");
  Config missing;
  EXPECT_EQ(Parse({"--config", "nosuchname"}, missing), kExitUsage);
}

TEST_F(OptionsTest, AFileInTheWorkingDirectoryWinsOverAName) {
  Write("local.conf", "workers = 7\n");
  char cwd[4096];
  ASSERT_NE(getcwd(cwd, sizeof cwd), nullptr);
  ASSERT_EQ(chdir(dir_.c_str()), 0);
  Config cfg;
  auto rc = Parse({"/d", "--config", "local.conf"}, cfg);
  ASSERT_EQ(chdir(cwd), 0);
  ASSERT_EQ(rc, std::nullopt);
  EXPECT_EQ(cfg.workers, 7);
}

TEST_F(OptionsTest, NearestNameOnlyForPlausibleTypos) {
  std::set<std::string> names = {"workers", "target", "endpoint", "stop-timeout"};
  EXPECT_EQ(NearestName("wrokers", names), "workers");
  EXPECT_EQ(NearestName("stop_timeout", names), "stop-timeout");
  EXPECT_EQ(NearestName("colour", names), "");
}

TEST_F(OptionsTest, VersionPrintsAndExitsOk) {
  Config cfg;
  testing::internal::CaptureStdout();
  EXPECT_EQ(Parse({"--version"}, cfg), kExitOk);
  std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(out.rfind("scribefs ", 0), 0u) << out;
}

// Bounded lag: --max-lag DURATION and --max-pending SIZE, on the command line,
// as fstab -o keys and in the config file; refused where they cannot act.
TEST_F(OptionsTest, DurationsAndSizes) {
  EXPECT_EQ(*ParseDuration("2s"), 2.0);
  EXPECT_EQ(*ParseDuration("500ms"), 0.5);
  EXPECT_EQ(*ParseDuration("1m"), 60.0);
  EXPECT_EQ(*ParseDuration("1.5h"), 5400.0);
  EXPECT_EQ(*ParseDuration("3"), 3.0);
  for (const char* bad : {"", "s", "0s", "-1s", "2 parsecs", "2x", "nan"})
    EXPECT_FALSE(ParseDuration(bad).ok()) << bad;
  EXPECT_EQ(*ParseSize("8M"), 8u << 20);
  EXPECT_EQ(*ParseSize("512K"), 512u << 10);
  EXPECT_EQ(*ParseSize("1G"), 1ull << 30);
  EXPECT_EQ(*ParseSize("1.5GiB"), 3ull << 29);
  EXPECT_EQ(*ParseSize("8mb"), 8u << 20);
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  for (const char* bad : {"", "M", "0", "-8M", "8Q", "8 MiB"})
    EXPECT_FALSE(ParseSize(bad).ok()) << bad;
}

TEST_F(OptionsTest, MaxLagAndMaxPendingEverywhereOptionsAre) {
  Config flags;
  ASSERT_EQ(Parse({"/d", "--target", "file:///t", "--max-lag", "2s", "--max-pending", "8M"}, flags),
            std::nullopt);
  EXPECT_EQ(flags.max_lag_s.value_or(0), 2.0);
  EXPECT_EQ(flags.max_pending_bytes.value_or(0), 8u << 20);
  Config fstab;
  ASSERT_EQ(Parse({"/d", "-o", "target=file:///t,max_lag=500ms,max-pending=1G"}, fstab),
            std::nullopt);
  EXPECT_EQ(fstab.max_lag_s.value_or(0), 0.5);
  EXPECT_EQ(fstab.max_pending_bytes.value_or(0), 1ull << 30);
  Config conf;
  std::string path = Write("lag.conf", "target = \"file:///t\"\nmax-lag = \"1m\"\n");
  ASSERT_EQ(Parse({"/d", "--config", path}, conf), std::nullopt);
  EXPECT_EQ(conf.max_lag_s.value_or(0), 60.0);
  EXPECT_FALSE(conf.max_pending_bytes.has_value());
  Config off;
  ASSERT_EQ(Parse({"/d", "--target", "file:///t"}, off), std::nullopt);
  EXPECT_FALSE(off.max_lag_s.has_value()) << "off by default";
  EXPECT_FALSE(off.max_pending_bytes.has_value());
}

// Copy-on-write capture: --max-spool SIZE bounds one checkpoint's spool.
TEST_F(OptionsTest, MaxSpool) {
  Config def, flag, fstab, bad;
  ASSERT_EQ(Parse({"/d"}, def), std::nullopt);
  EXPECT_EQ(def.max_spool_bytes, 1ull << 30) << "1G by default";
  ASSERT_EQ(Parse({"/d", "--max-spool", "512M"}, flag), std::nullopt);
  EXPECT_EQ(flag.max_spool_bytes, 512ull << 20);
  ASSERT_EQ(Parse({"/d", "-o", "max_spool=2G"}, fstab), std::nullopt);
  EXPECT_EQ(fstab.max_spool_bytes, 2ull << 30);
  EXPECT_EQ(Parse({"/d", "--max-spool", "lots"}, bad), kExitUsage);
}

TEST_F(OptionsTest, MaxLagIsRefusedWhereItCannotAct) {
  Config bad_value, journal_only, sync;
  EXPECT_EQ(Parse({"/d", "--target", "file:///t", "--max-lag", "soon"}, bad_value), kExitUsage);
  EXPECT_EQ(Parse({"/d", "--max-pending", "8M"}, journal_only), kExitUsage);
  EXPECT_EQ(Parse({"/d", "--target", "file:///t", "--mode", "sync", "--max-lag", "2s"}, sync),
            kExitUsage);
  Config c;
  c.max_pending = "8M";
  EXPECT_NE(CheckLagOptions(c)->find("--target"), std::string::npos);
  c.target = "file:///t";
  c.mode = "sync";
  EXPECT_NE(CheckLagOptions(c)->find("sync"), std::string::npos);
  c.mode = "async";
  EXPECT_FALSE(CheckLagOptions(c).has_value());
}

}  // namespace
}  // namespace scribefs
