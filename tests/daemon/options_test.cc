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
#include "daemon/startup_checks.h"

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

// ---- several targets (issue 16): --target repeated, [target NAME] sections

// Fixture helpers: a parse expected to fail, and its message.
class TargetsTest : public OptionsTest {
 protected:
  // The message of a refused parse of args (which must be refused).
  std::string Refusal(std::vector<std::string> args) {
    Config cfg;
    testing::internal::CaptureStderr();
    auto rc = Parse(std::move(args), cfg);
    std::string err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(rc, kExitUsage) << err;
    return err;
  }
  // The message of a refused parse of a config file with text.
  std::string ConfigRefusal(const std::string& text) {
    return Refusal({"/d", "--config", Write("t.conf", text)});
  }
};

TEST_F(TargetsTest, DefaultNamesComeFromTheUrl) {
  EXPECT_EQ(DefaultTargetName("file:///mnt/usb/data"), "data");
  EXPECT_EQ(DefaultTargetName("file:///mnt/usb/data/"), "data");
  EXPECT_EQ(DefaultTargetName("s3://bucket"), "bucket");
  EXPECT_EQ(DefaultTargetName("s3://bucket/"), "bucket");
  EXPECT_EQ(DefaultTargetName("s3://bucket/host1/daily"), "daily");
  EXPECT_EQ(DefaultTargetName("file:///srv/my backup"), "my-backup");
  EXPECT_EQ(DefaultTargetName("file:///"), "target");
  EXPECT_EQ(DefaultTargetName("file:///a/.."), "target");
  EXPECT_EQ(DefaultTargetName("s3://b/" + std::string(80, 'x')), std::string(64, 'x'));
}

TEST_F(TargetsTest, SeveralTargetFlagsWithDerivedNames) {
  Config cfg;
  // DATADIR after the URLs: each --target takes one value.
  ASSERT_EQ(Parse({"--target", "file:///mnt/usb/data", "--target", "s3://bucket", "--target",
                   "s3://other/host1/data", "--workers", "6", "--mode", "sync", "/d"},
                  cfg),
            std::nullopt);
  EXPECT_EQ(cfg.datadir, "/d");
  ASSERT_EQ(cfg.targets.size(), 3u);
  EXPECT_EQ(cfg.targets[0].name, "data");
  EXPECT_EQ(cfg.targets[0].url, "file:///mnt/usb/data");
  EXPECT_EQ(cfg.targets[1].name, "bucket");
  EXPECT_EQ(cfg.targets[2].name, "data-2") << "a collision gets -2";
  EXPECT_EQ(cfg.targets[2].url, "s3://other/host1/data");
  for (const auto& t : cfg.targets) {
    EXPECT_EQ(t.workers, 6) << t.name;
    EXPECT_EQ(t.mode, "sync") << t.name;
  }
  // Several: the single-target fields stay as without a target.
  EXPECT_EQ(cfg.target, "");
  // fstab style too.
  Config fstab;
  ASSERT_EQ(Parse({"/d", "-o", "target=s3://a,target=s3://b"}, fstab), std::nullopt);
  ASSERT_EQ(fstab.targets.size(), 2u);
  EXPECT_EQ(fstab.targets[1].name, "b");
  // DATADIR right after a URL stays DATADIR.
  Config next;
  ASSERT_EQ(Parse({"--target", "s3://a", "/d", "/m"}, next), std::nullopt);
  EXPECT_EQ(next.datadir, "/d");
  EXPECT_EQ(next.mountpoint, "/m");
  EXPECT_EQ(next.target, "s3://a");
}

TEST_F(TargetsTest, SectionsOverrideTheGlobalOptions) {
  std::string path = Write("two.conf",
                           "mode = \"sync\"\n"
                           "workers = 2\n"
                           "exclude = \"*.log\"\n"
                           "[target usb]\n"
                           "url = file:///mnt/usb/data\n"
                           "workers = 8\n"
                           "\n"
                           "# the second copy\n"
                           "[target offsite]\n"
                           "url = \"s3://bucket/host1\"\n"
                           "endpoint = https://s3.example.net\n"
                           "region = 'eu-1'\n"
                           "ca-file = /etc/ca.pem\n"
                           "mode = async\n"
                           "delete = keep\n"
                           "part_size = 16\n"
                           "no_default_excludes = true\n");
  Config cfg;
  ASSERT_EQ(Parse({"/d", "--config", path, "--ca-file", "/etc/global.pem"}, cfg), std::nullopt);
  ASSERT_EQ(cfg.targets.size(), 2u);
  const TargetConfig& usb = cfg.targets[0];
  EXPECT_EQ(usb.name, "usb");
  EXPECT_EQ(usb.url, "file:///mnt/usb/data");
  EXPECT_EQ(usb.workers, 8);
  EXPECT_EQ(usb.mode, "sync") << "the file's global mode";
  EXPECT_EQ(usb.excludes, std::vector<std::string>{"*.log"});
  EXPECT_EQ(usb.ca_file, "/etc/global.pem") << "the command line's global --ca-file";
  EXPECT_EQ(usb.delete_mode, "propagate");
  EXPECT_EQ(usb.part_size_mib, 8.0);
  EXPECT_FALSE(usb.no_default_excludes);
  const TargetConfig& off = cfg.targets[1];
  EXPECT_EQ(off.name, "offsite");
  EXPECT_EQ(off.url, "s3://bucket/host1");
  EXPECT_EQ(off.endpoint, "https://s3.example.net");
  EXPECT_EQ(off.region, "eu-1");
  EXPECT_EQ(off.ca_file, "/etc/ca.pem");
  EXPECT_EQ(off.mode, "async");
  EXPECT_EQ(off.delete_mode, "keep");
  EXPECT_EQ(off.part_size_mib, 16.0);
  EXPECT_TRUE(off.no_default_excludes);
  EXPECT_EQ(off.workers, 2) << "the file's global workers";
  EXPECT_EQ(cfg.target, "");
}

TEST_F(TargetsTest, OneSectionIsLikeOneTargetFlag) {
  std::string path = Write("one.conf",
                           "[target usb]\nurl = file:///mnt/usb\nmode = sync\nworkers = 3\n"
                           "exclude = *.tmp\ndelete = keep\npart_size = 32\n"
                           "endpoint = http://h:1\nregion = r\nca_file = /ca\n"
                           "no_default_excludes = yes\n");
  Config section, flags;
  ASSERT_EQ(Parse({"/d", "--config", path}, section), std::nullopt);
  ASSERT_EQ(Parse({"/d",
                   "--target",
                   "file:///mnt/usb",
                   "--mode",
                   "sync",
                   "--workers",
                   "3",
                   "--exclude",
                   "*.tmp",
                   "--delete",
                   "keep",
                   "--part-size",
                   "32",
                   "--endpoint",
                   "http://h:1",
                   "--region",
                   "r",
                   "--ca-file",
                   "/ca",
                   "--no-default-excludes"},
                  flags),
            std::nullopt);
  for (const Config* c : {&section, &flags}) {
    EXPECT_EQ(c->target, "file:///mnt/usb");
    EXPECT_EQ(c->mode, "sync");
    EXPECT_EQ(c->workers, 3);
    EXPECT_EQ(c->excludes, std::vector<std::string>{"*.tmp"});
    EXPECT_EQ(c->delete_mode, "keep");
    EXPECT_EQ(c->part_size_mib, 32.0);
    EXPECT_EQ(c->endpoint, "http://h:1");
    EXPECT_EQ(c->region, "r");
    EXPECT_EQ(c->ca_file, "/ca");
    EXPECT_TRUE(c->no_default_excludes);
    ASSERT_EQ(c->targets.size(), 1u);
    EXPECT_TRUE(c->history_on) << "a target: history on by default";
  }
  EXPECT_EQ(section.targets[0].name, "usb");
  EXPECT_EQ(flags.targets[0].name, "usb");  // file:///mnt/usb
}

TEST_F(TargetsTest, ExcludeAsArrayAndAsString) {
  std::string path = Write("ex.conf",
                           "exclude = \"*.log\"\n"
                           "[target a]\nurl = s3://a\nexclude = [\"*.tmp\", '*.bak']\n"
                           "[target b]\nurl = s3://b\nexclude = *.o\nmode = sync\nexclude = *.a\n"
                           "[target c]\nurl = s3://c\nexclude = []\n"
                           "[target d]\nurl = s3://d\n");
  Config cfg;
  ASSERT_EQ(Parse({"/d", "--config", path}, cfg), std::nullopt);
  ASSERT_EQ(cfg.targets.size(), 4u);
  EXPECT_EQ(cfg.targets[0].excludes, (std::vector<std::string>{"*.tmp", "*.bak"}));
  EXPECT_EQ(cfg.targets[1].excludes, (std::vector<std::string>{"*.o", "*.a"}));
  EXPECT_EQ(cfg.targets[2].excludes, std::vector<std::string>{}) << "[] empties the global list";
  EXPECT_EQ(cfg.targets[3].excludes, std::vector<std::string>{"*.log"}) << "inherited";
}

TEST_F(TargetsTest, CommandLineTargetsReplaceTheFilesTargets) {
  std::string path = Write("f.conf", "target = s3://top\n[target usb]\nurl = file:///mnt/usb\n");
  Config file, cli;
  ASSERT_EQ(Parse({"/d", "--config", path}, file), std::nullopt);
  ASSERT_EQ(file.targets.size(), 2u) << "the file's top-level target and its section";
  EXPECT_EQ(file.targets[0].name, "top");
  EXPECT_EQ(file.targets[1].name, "usb");
  ASSERT_EQ(Parse({"/d", "--config", path, "--target", "s3://mine"}, cli), std::nullopt);
  ASSERT_EQ(cli.targets.size(), 1u);
  EXPECT_EQ(cli.target, "s3://mine");
}

TEST_F(TargetsTest, ASectionWithoutUrlIsAnError) {
  std::string err = ConfigRefusal("[target usb]\nmode = sync\n");
  EXPECT_NE(err.find("[target usb]"), std::string::npos) << err;
  EXPECT_NE(err.find("has no url"), std::string::npos) << err;
  EXPECT_NE(ConfigRefusal("[target usb]\nurl = \"\"\n").find("has no url"), std::string::npos);
}

TEST_F(TargetsTest, UnknownKeyInASectionNamesSectionKeyAndHint) {
  std::string err = ConfigRefusal("[target usb]\nurl = file:///t\nwrokers = 3\n");
  EXPECT_NE(err.find("unknown key 'wrokers'"), std::string::npos) << err;
  EXPECT_NE(err.find("[target usb]"), std::string::npos) << err;
  EXPECT_NE(err.find("t.conf"), std::string::npos) << err;
  EXPECT_NE(err.find("did you mean 'workers'"), std::string::npos) << err;
  // A global option in a section: said so.
  err = ConfigRefusal("[target usb]\nurl = file:///t\nsync-timeout = 3\n");
  EXPECT_NE(err.find("'sync_timeout'"), std::string::npos) << err;
  EXPECT_NE(err.find("every target"), std::string::npos) << err;
  // CLI11 takes a header with a comment after it for a key.
  err = ConfigRefusal("[target usb]\nurl = file:///t\n[target b]  # note\nurl = s3://b\n");
  EXPECT_NE(err.find("no comment after it"), std::string::npos) << err;
}

TEST_F(TargetsTest, BadValuesInASection) {
  std::string err = ConfigRefusal("[target usb]\nurl = file:///t\nmode = later\n");
  EXPECT_NE(err.find("[target usb] of " + dir_ + "/t.conf: mode: 'later' is not async|sync"),
            std::string::npos)
      << err;
  for (const char* bad : {"workers = 0", "workers = 2.5", "workers = many", "part_size = 4",
                          "delete = sometimes", "no_default_excludes = maybe",
                          "mode = sync\nmode = async", "region = \"a#b\"", "url = file:///u"}) {
    err = ConfigRefusal("[target usb]\nurl = file:///t\n" + std::string(bad) + "\n");
    EXPECT_NE(err.find("[target usb]"), std::string::npos) << bad << ": " << err;
  }
}

// --on-failure/--alert-after: global defaults, a section's own, bad values.
TEST_F(TargetsTest, FailureHookAndAlertDelayPerTarget) {
  std::string path = Write("hook.conf",
                           "on-failure = \"logger -t scribefs\"\n"
                           "alert-after = 30s\n"
                           "[target usb]\n"
                           "url = file:///mnt/usb\n"
                           "[target offsite]\n"
                           "url = s3://b/h\n"
                           "on_failure = /usr/local/bin/page-oncall --now\n"
                           "alert_after = 2m\n");
  Config cfg;
  ASSERT_EQ(Parse({"/d", "--config", path}, cfg), std::nullopt);
  ASSERT_EQ(cfg.targets.size(), 2u);
  EXPECT_EQ(cfg.targets[0].on_failure, "logger -t scribefs");
  EXPECT_EQ(cfg.targets[0].alert_after_s, 30.0);
  EXPECT_EQ(cfg.targets[1].on_failure, "/usr/local/bin/page-oncall --now")
      << "a section's unquoted command is its words, joined";
  EXPECT_EQ(cfg.targets[1].alert_after_s, 120.0);
  Config plain;
  ASSERT_EQ(Parse({"/d", "--target", "s3://b"}, plain), std::nullopt);
  EXPECT_EQ(plain.alert_after_s, 300.0) << "the default: 5 minutes";
  EXPECT_EQ(plain.on_failure, "");
  Config bad;
  EXPECT_EQ(Parse({"/d", "--target", "s3://b", "--alert-after", "soon"}, bad), kExitUsage);
  Config zero;
  EXPECT_EQ(Parse({"/d", "--target", "s3://b", "--alert-after", "0s"}, zero), kExitUsage);
  Config no_target;
  EXPECT_EQ(Parse({"/d", "--on-failure", "true"}, no_target), kExitUsage);
  std::string err = ConfigRefusal("[target usb]\nurl = file:///t\nalert_after = never\n");
  EXPECT_NE(err.find("[target usb]"), std::string::npos) << err;
  EXPECT_NE(err.find("alert_after"), std::string::npos) << err;
}

// Bounded lag per target: the global bounds are every target's default; a
// section sets its own or "off"; a sync target's own bound is refused.
TEST_F(TargetsTest, LagBoundsPerTarget) {
  std::string path = Write("lag.conf",
                           "max-pending = 8M\n"
                           "[target usb]\n"
                           "url = file:///mnt/usb\n"
                           "max_lag = 30s\n"
                           "[target offsite]\n"
                           "url = s3://b/h\n"
                           "max_pending = off\n"
                           "[target nas]\n"
                           "url = file:///mnt/nas\n");
  Config cfg;
  ASSERT_EQ(Parse({"/d", "--config", path}, cfg), std::nullopt);
  ASSERT_EQ(cfg.targets.size(), 3u);
  EXPECT_EQ(cfg.targets[0].max_lag_s, 30.0);
  EXPECT_EQ(cfg.targets[0].max_pending_bytes, 8u << 20) << "the global default";
  EXPECT_FALSE(cfg.targets[1].max_lag_s.has_value());
  EXPECT_FALSE(cfg.targets[1].max_pending_bytes.has_value()) << "off";
  EXPECT_EQ(cfg.targets[2].max_pending_bytes, 8u << 20);
  Config view = ForTarget(cfg, cfg.targets[0]);
  EXPECT_EQ(view.max_lag_s, 30.0);
  std::string err = ConfigRefusal("[target usb]\nurl = file:///t\nmax_lag = soon\n");
  EXPECT_NE(err.find("[target usb]"), std::string::npos) << err;
  EXPECT_NE(err.find("max_lag"), std::string::npos) << err;
  err = ConfigRefusal(
      "[target usb]\nurl = file:///t\nmode = sync\nmax_lag = 2s\n"
      "[target off]\nurl = s3://b\n");
  EXPECT_NE(err.find("[target usb]: max_lag/max_pending apply to async targets"), std::string::npos)
      << err;
  // A global bound with a sync and an async target: for the async one.
  std::string mixed = Write("mixed.conf",
                            "max-lag = 1m\n[target usb]\nurl = file:///t\nmode = sync\n"
                            "[target off]\nurl = s3://b\n");
  Config ok;
  EXPECT_EQ(Parse({"/d", "--config", mixed}, ok), std::nullopt);
  err = ConfigRefusal(
      "max-lag = 1m\n[target usb]\nurl = file:///t\nmode = sync\n"
      "[target nas]\nurl = file:///n\nmode = sync\n");
  EXPECT_NE(err.find("every target is sync"), std::string::npos) << err;
}

TEST_F(TargetsTest, TwoTargetsWithTheSameUrl) {
  std::string err = Refusal({"/d", "--target", "s3://b/p", "--target", "s3://b/p/"});
  EXPECT_NE(err.find("same url"), std::string::npos) << err;
  err = ConfigRefusal("[target a]\nurl = file:///t\n[target b]\nurl = file:///t/\n");
  EXPECT_NE(err.find("'a' and 'b' have the same url"), std::string::npos) << err;
}

TEST_F(TargetsTest, TwoSectionsWithTheSameName) {
  std::string err = ConfigRefusal("[target a]\nurl = s3://x\n[target a]\nurl = s3://y\n");
  EXPECT_NE(err.find("two [target a] sections"), std::string::npos) << err;
  // A --target whose derived name is a section's gets another one.
  std::string path = Write("n.conf", "target = file:///a/data\n[target data]\nurl = s3://x\n");
  Config cfg;
  ASSERT_EQ(Parse({"/d", "--config", path}, cfg), std::nullopt);
  ASSERT_EQ(cfg.targets.size(), 2u);
  EXPECT_EQ(cfg.targets[0].name, "data-2");
  EXPECT_EQ(cfg.targets[1].name, "data");
}

TEST_F(TargetsTest, BadSectionNames) {
  for (const char* header :
       {"[target a/b]", "[target my usb]", "[target a#b]", "[target \"usb\"]", "[target ..]"}) {
    std::string err = ConfigRefusal(std::string(header) + "\nurl = s3://x\n");
    EXPECT_NE(err.find("bad target name"), std::string::npos) << header << ": " << err;
  }
  std::string err = ConfigRefusal("[target " + std::string(65, 'n') + "]\nurl = s3://x\n");
  EXPECT_NE(err.find("bad target name"), std::string::npos) << err;
  err = ConfigRefusal("[target]\nurl = s3://x\n");
  EXPECT_NE(err.find("needs a name"), std::string::npos) << err;
  err = ConfigRefusal("[target .]\nurl = s3://x\n");  // CLI11 drops a last empty part
  EXPECT_NE(err.find("needs a name"), std::string::npos) << err;
  // Other sections stay unknown keys.
  err = ConfigRefusal("[targets]\nurl = s3://x\n");
  EXPECT_NE(err.find("unknown key 'targets.url'"), std::string::npos) << err;
  // Names with '.', which CLI11 splits a header at.
  Config ok;
  ASSERT_EQ(Parse({"/d", "--config",
                   Write("ok.conf",
                         "[ target  A-z_0.9 ]\nurl = s3://x\n"
                         "[target my.bucket.eu]\nurl = s3://y\n[target my.bucket]\n"
                         "url = s3://z\n[target .x]\nurl = s3://w\n")},
                  ok),
            std::nullopt);
  ASSERT_EQ(ok.targets.size(), 4u);
  EXPECT_EQ(ok.targets[3].name, ".x");
  EXPECT_EQ(ok.targets[0].name, "A-z_0.9");
  EXPECT_EQ(ok.targets[1].name, "my.bucket.eu");
  EXPECT_EQ(ok.targets[2].name, "my.bucket");
  EXPECT_EQ(ok.targets[2].url, "s3://z");
}

// The daemon starts each target's uploader from its view of the Config:
// the single-target fields are that target's.
TEST_F(TargetsTest, EachTargetsViewHasItsOwnSettings) {
  Config two;
  ASSERT_EQ(Parse({"/d", "--target", "s3://a", "--target", "file:///b", "--mode", "sync",
                   "--exclude", "*.tmp"},
                  two),
            std::nullopt);
  ASSERT_EQ(two.targets.size(), 2u);
  two.targets[1].mode = "async";
  two.targets[1].excludes = {"*.log"};
  Config a = ForTarget(two, two.targets[0]), b = ForTarget(two, two.targets[1]);
  EXPECT_EQ(a.target, "s3://a");
  EXPECT_EQ(a.mode, "sync");
  ASSERT_EQ(a.excludes.size(), 1u);
  EXPECT_EQ(a.excludes[0], "*.tmp");
  EXPECT_EQ(b.target, "file:///b");
  EXPECT_EQ(b.mode, "async");
  ASSERT_EQ(b.excludes.size(), 1u);
  EXPECT_EQ(b.excludes[0], "*.log");
  EXPECT_EQ(b.targets.size(), 2u);  // the rest of the Config is the same
}

TEST_F(TargetsTest, EveryFileTargetStaysOutOfDatadir) {
  Config cfg;
  ASSERT_EQ(Parse({dir_, "--target", "s3://a", "--target", "file://" + dir_ + "/inside"}, cfg),
            std::nullopt);
  cfg.state_dir = "/nonexistent-state";
  auto e = CheckTargetPlacement(cfg);
  ASSERT_TRUE(e.has_value());
  EXPECT_NE(e->message.find("target inside (file://"), std::string::npos) << e->message;
  EXPECT_NE(e->message.find("inside DATADIR"), std::string::npos) << e->message;
  Config outside;
  ASSERT_EQ(Parse({dir_, "--target", "s3://a", "--target", "file:///elsewhere"}, outside),
            std::nullopt);
  outside.state_dir = "/nonexistent-state";
  EXPECT_FALSE(CheckTargetPlacement(outside).has_value());
  // --endpoint with only sections is their default, not an endpoint without a target.
  Config sections;
  ASSERT_EQ(Parse({dir_, "--endpoint", "http://h:1", "--config",
                   Write("e.conf", "[target a]\nurl = s3://a\n[target b]\nurl = s3://b\n")},
                  sections),
            std::nullopt);
  EXPECT_FALSE(CheckTargetPlacement(sections).has_value());
  EXPECT_EQ(sections.targets[1].endpoint, "http://h:1");
}

}  // namespace
}  // namespace scribefs
