// The PKI (include/cloudmgr/pki.h): what init and issue write, that re-running keeps every
// key, that each broken file is named, and that the documents verify with OpenSSL itself.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "cloudmgr/cloud.h"
#include "cloudmgr/pki.h"
#include "pki/pki_internal.h"

namespace cloudmgr::pki {
namespace {

namespace fs = std::filesystem;

constexpr std::int64_t kDayNs = 86'400LL * 1'000'000'000;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void spit(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 0777;
}

// Runs a shell command, returning its exit status.
int sh(const std::string& command) { return std::system(command.c_str()); }  // NOLINT(concurrency-mt-unsafe)

class PkiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt_dir();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static std::string fmt_dir() {
    return "cloudmgr-pki-test-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }

  std::string pki() const { return (dir_ / "pki").string(); }
  fs::path id_dir(const char* leaf) const { return dir_ / "pki" / "identities" / leaf; }

  void init_pki() { ASSERT_TRUE(init({.dir = pki()}).ok()); }

  IdentityInfo issue_ok(Role role, const std::string& name) {
    auto r = issue({.dir = pki(), .role = role, .name = name});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->identity : IdentityInfo{};
  }

  fs::path dir_;
};

TEST_F(PkiTest, InitWritesTwoCasTheSignedGovernanceAndPrivateKeys) {
  auto r = init({.dir = pki()});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->created);
  EXPECT_EQ(r->files.size(), 6U);
  for (const char* f : {"identity_ca.pem", "permissions_ca.pem", "governance.xml", "governance.p7s"}) {
    EXPECT_TRUE(fs::exists(dir_ / "pki" / f)) << f;
  }
  EXPECT_EQ(mode_of(dir_ / "pki" / "private"), 0700U);
  EXPECT_EQ(mode_of(dir_ / "pki" / "private" / "identity_ca.key"), 0600U);
  EXPECT_EQ(mode_of(dir_ / "pki" / "private" / "permissions_ca.key"), 0600U);
  EXPECT_NE(slurp(dir_ / "pki" / "identity_ca.pem"), slurp(dir_ / "pki" / "permissions_ca.pem"));

  // OpenSSL itself agrees: the governance verifies against the permissions CA and not
  // against the identity CA; it asks for encryption everywhere and no unauthenticated joins.
  const std::string d = pki();
  EXPECT_EQ(sh("openssl smime -verify -in " + d + "/governance.p7s -CAfile " + d +
               "/permissions_ca.pem -out /dev/null 2>/dev/null"),
            0);
  EXPECT_NE(sh("openssl smime -verify -in " + d + "/governance.p7s -CAfile " + d +
               "/identity_ca.pem -out /dev/null 2>/dev/null"),
            0);
  const std::string gov = slurp(dir_ / "pki" / "governance.xml");
  EXPECT_TRUE(contains(gov, "<allow_unauthenticated_participants>false<")) << gov;
  EXPECT_TRUE(contains(gov, "<enable_join_access_control>true<")) << gov;
  for (const char* kind : {"discovery_protection_kind", "liveliness_protection_kind", "rtps_protection_kind",
                           "metadata_protection_kind", "data_protection_kind"}) {
    EXPECT_TRUE(contains(gov, std::string("<") + kind + ">ENCRYPT<")) << kind;
  }
}

TEST_F(PkiTest, InitAgainKeepsEverything) {
  init_pki();
  const std::string key = slurp(dir_ / "pki" / "private" / "identity_ca.key");
  const std::string ca = slurp(dir_ / "pki" / "identity_ca.pem");
  auto again = init({.dir = pki()});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->created);
  EXPECT_TRUE(again->files.empty());
  EXPECT_EQ(slurp(dir_ / "pki" / "private" / "identity_ca.key"), key);
  EXPECT_EQ(slurp(dir_ / "pki" / "identity_ca.pem"), ca);
}

TEST_F(PkiTest, APartialPkiIsNamedAndNothingIsOverwritten) {
  init_pki();
  fs::remove(dir_ / "pki" / "permissions_ca.pem");
  const std::string key = slurp(dir_ / "pki" / "private" / "permissions_ca.key");
  auto r = init({.dir = pki()});
  ASSERT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status();
  EXPECT_TRUE(contains(r.status().message(), "permissions_ca.pem")) << r.status();
  EXPECT_EQ(slurp(dir_ / "pki" / "private" / "permissions_ca.key"), key);
  EXPECT_FALSE(fs::exists(dir_ / "pki" / "permissions_ca.pem"));
}

TEST_F(PkiTest, CaKeysCanLiveApart) {
  const std::string ca = (dir_ / "offline-ca").string();
  ASSERT_TRUE(init({.dir = pki(), .ca_dir = ca}).ok());
  EXPECT_FALSE(fs::exists(dir_ / "pki" / "private"));
  EXPECT_TRUE(fs::exists(fs::path(ca) / "identity_ca.key"));
  // Without the CA directory nothing can be issued, and the message says where it looked.
  auto no_keys = issue({.dir = pki(), .role = Role::kAgent, .name = "node1"});
  ASSERT_EQ(no_keys.status().code(), StatusCode::kNotFound) << no_keys.status();
  EXPECT_TRUE(contains(no_keys.status().message(), "/pki/private")) << no_keys.status();
  EXPECT_FALSE(fs::exists(id_dir("agent.node1") / "key.pem"));
  auto r = issue({.dir = pki(), .ca_dir = ca, .role = Role::kAgent, .name = "node1"});
  ASSERT_TRUE(r.ok()) << r.status();
  // The cloud's directory alone is a sound PKI to check and to run with.
  EXPECT_TRUE(init({.dir = pki()}).ok());
  EXPECT_TRUE(load_credentials(pki(), Role::kAgent, "node1").ok());
}

TEST_F(PkiTest, IssueMakesAnIdentityWithItsOwnPermissions) {
  init_pki();
  const std::int64_t before = now_ns();
  const IdentityInfo i = issue_ok(Role::kAgent, "node1");
  EXPECT_TRUE(i.problem.empty()) << i.problem;
  EXPECT_EQ(i.subject, "CN=node1, OU=agent, O=cloudmgr");
  EXPECT_LE(i.cert_not_before_ns, before);
  EXPECT_NEAR(static_cast<double>(i.cert_not_after_ns - before), 365.0 * kDayNs, 400e9);
  EXPECT_EQ(i.permissions_not_after_ns, i.cert_not_after_ns);
  const fs::path d = id_dir("agent.node1");
  EXPECT_EQ(mode_of(d / "key.pem"), 0600U);
  const std::string pem = slurp(d / "key.pem");
  EXPECT_TRUE(contains(pem, "PRIVATE KEY")) << "PEM";

  const std::string p = pki();
  // The certificate chains to the identity CA only; its key is EC P-256.
  EXPECT_EQ(sh("openssl verify -CAfile " + p + "/identity_ca.pem " + d.string() + "/cert.pem >/dev/null 2>&1"), 0);
  EXPECT_NE(sh("openssl verify -CAfile " + p + "/permissions_ca.pem " + d.string() + "/cert.pem >/dev/null 2>&1"), 0);
  EXPECT_EQ(sh("openssl x509 -in " + d.string() + "/cert.pem -noout -text | grep -q 'NIST CURVE: P-256'"), 0);
  // The permissions verify against the permissions CA, name the subject, and confine the
  // agent's writers to its own partition.
  EXPECT_EQ(sh("openssl smime -verify -in " + d.string() + "/permissions.p7s -CAfile " + p +
               "/permissions_ca.pem -out /dev/null 2>/dev/null"),
            0);
  const std::string perms = slurp(d / "permissions.xml");
  EXPECT_TRUE(contains(perms, "<subject_name>CN=node1, OU=agent, O=cloudmgr</subject_name>")) << perms;
  EXPECT_TRUE(contains(perms, "<partition>host.node1</partition>")) << perms;
  EXPECT_TRUE(contains(perms, "<partition>group.*</partition>")) << perms;
  EXPECT_FALSE(contains(perms, "<partition>host.*</partition>")) << perms;
  EXPECT_TRUE(contains(perms, "<default>DENY</default>")) << perms;
  const std::size_t publish = perms.find("<publish>");
  ASSERT_NE(publish, std::string::npos);
  EXPECT_EQ(perms.find("<publish>", publish + 1), std::string::npos) << "one publish rule";
  const std::string published = perms.substr(publish, perms.find("</publish>") - publish);
  EXPECT_FALSE(contains(published, "cloudmgr/Command<")) << "agents never publish commands";
  EXPECT_TRUE(contains(published, "cloudmgr/HostStatus<")) << published;

  const IdentityInfo m = issue_ok(Role::kManager, "admin");
  const std::string mperms = slurp(id_dir("manager.admin") / "permissions.xml");
  EXPECT_TRUE(contains(mperms, "<partition>host.*</partition>")) << mperms;
  EXPECT_NE(mperms.find("cloudmgr/Command<", mperms.find("<publish>")), std::string::npos) << mperms;
  EXPECT_EQ(m.subject, "CN=admin, OU=manager, O=cloudmgr");
}

TEST_F(PkiTest, IssueAgainKeepsTheKeyAndRenewReSignsForIt) {
  init_pki();
  issue_ok(Role::kAgent, "node1");
  const fs::path d = id_dir("agent.node1");
  const std::string key = slurp(d / "key.pem");
  const std::string cert = slurp(d / "cert.pem");
  auto again = issue({.dir = pki(), .role = Role::kAgent, .name = "node1"});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->created);
  EXPECT_TRUE(again->files.empty());
  EXPECT_EQ(slurp(d / "cert.pem"), cert);

  auto renewed = issue({.dir = pki(), .role = Role::kAgent, .name = "node1", .validity_days = 30, .renew = true});
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_FALSE(renewed->created);
  EXPECT_EQ(slurp(d / "key.pem"), key);
  EXPECT_NE(slurp(d / "cert.pem"), cert);
  EXPECT_NEAR(static_cast<double>(renewed->identity.cert_not_after_ns - now_ns()), 30.0 * kDayNs, 400e9);
  EXPECT_TRUE(renewed->identity.problem.empty()) << renewed->identity.problem;
}

TEST_F(PkiTest, BadNamesAndWindowsAreInvalidArgument) {
  init_pki();
  for (const char* bad : {"", "a b", "x,OU=manager", "a/b", "CN=x"}) {
    auto r = issue({.dir = pki(), .role = Role::kAgent, .name = bad});
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  auto window = issue({.dir = pki(), .role = Role::kAgent, .name = "n", .not_before_ns = 10, .not_after_ns = 5});
  EXPECT_EQ(window.status().code(), StatusCode::kInvalidArgument);
  auto half = issue({.dir = pki(), .role = Role::kAgent, .name = "n", .not_before_ns = 10});
  EXPECT_EQ(half.status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(id_dir("agent.n")));
  auto nopki = issue({.dir = (dir_ / "none").string(), .role = Role::kAgent, .name = "n"});
  EXPECT_EQ(nopki.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(contains(nopki.status().message(), "pki init")) << nopki.status();
}

TEST_F(PkiTest, ListShowsRolesExpiryAndProblems) {
  init_pki();
  issue_ok(Role::kAgent, "node2");
  issue_ok(Role::kAgent, "node1");
  issue_ok(Role::kManager, "admin");
  const std::int64_t now = now_ns();
  ASSERT_TRUE(issue({.dir = pki(),
                     .role = Role::kAgent,
                     .name = "old",
                     .not_before_ns = now - 10 * kDayNs,
                     .not_after_ns = now - kDayNs})
                  .ok());
  auto l = list(pki());
  ASSERT_TRUE(l.ok()) << l.status();
  ASSERT_EQ(l->size(), 4U);
  EXPECT_EQ((*l)[0].role, Role::kManager);
  EXPECT_EQ((*l)[1].name, "node1");
  EXPECT_EQ((*l)[2].name, "node2");
  EXPECT_EQ((*l)[3].name, "old");
  EXPECT_TRUE((*l)[1].problem.empty()) << (*l)[1].problem;
  EXPECT_TRUE(contains((*l)[3].problem, "expired")) << (*l)[3].problem;
  EXPECT_EQ(list((dir_ / "none").string()).status().code(), StatusCode::kNotFound);
}

TEST_F(PkiTest, ParseSubjectIsTheInverseOfSubjectFor) {
  auto s = parse_subject(subject_for(Role::kAgent, "node-1.a_b"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->role, Role::kAgent);
  EXPECT_EQ(s->name, "node-1.a_b");
  for (const char* bad : {"", "CN=x", "CN=x, OU=agent, O=other", "CN=x, OU=admin, O=cloudmgr",
                          "CN=a b, OU=agent, O=cloudmgr", "O=cloudmgr, OU=agent, CN=x"}) {
    EXPECT_EQ(parse_subject(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

// load_credentials: every file checked before a participant exists, one line naming it.
class CredentialsTest : public PkiTest {
 protected:
  void SetUp() override {
    PkiTest::SetUp();
    init_pki();
    issue_ok(Role::kAgent, "node1");
  }
  Status load() { return load_credentials(pki(), Role::kAgent, "node1").status(); }
};

TEST_F(CredentialsTest, ASoundIdentityLoads) {
  auto c = load_credentials(pki(), Role::kAgent, "node1");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->subject, "CN=node1, OU=agent, O=cloudmgr");
  EXPECT_EQ(c->identity_certificate, (id_dir("agent.node1") / "cert.pem").string());
  EXPECT_TRUE(fs::path(c->governance).is_absolute());
  EXPECT_GT(c->not_after_ns, now_ns());
}

TEST_F(CredentialsTest, AMissingIdentityOrFileIsNotFoundNamingIt) {
  const Status none = load_credentials(pki(), Role::kAgent, "node9").status();
  EXPECT_EQ(none.code(), StatusCode::kNotFound);
  EXPECT_TRUE(contains(none.message(), "agent.node9")) << none;
  EXPECT_TRUE(contains(none.message(), "pki issue agent node9")) << none;
  fs::remove(id_dir("agent.node1") / "permissions.p7s");
  const Status s = load();
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s;
  EXPECT_TRUE(contains(s.message(), "permissions.p7s")) << s;
}

TEST_F(CredentialsTest, AnUnreadableKeyIsPermissionDenied) {
  if (::geteuid() == 0) {
    GTEST_SKIP() << "root reads any file: a mode cannot make it unreadable here";
  }
  fs::permissions(id_dir("agent.node1") / "key.pem", fs::perms::none);
  EXPECT_EQ(load().code(), StatusCode::kPermissionDenied);
}

TEST_F(CredentialsTest, AKeyReadableByOthersIsRefused) {
  fs::permissions(id_dir("agent.node1") / "key.pem", fs::perms::others_read, fs::perm_options::add);
  const Status s = load();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(s.message(), "key.pem")) << s;
  EXPECT_TRUE(contains(s.message(), "readable by others")) << s;
}

TEST_F(CredentialsTest, AGarbledCertificateIsNamed) {
  spit(id_dir("agent.node1") / "cert.pem", "not a certificate\n");
  const Status s = load();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(s.message(), "cert.pem': not a PEM certificate")) << s;
}

TEST_F(CredentialsTest, AKeyOfAnotherIdentityIsNamed) {
  issue_ok(Role::kAgent, "node2");
  fs::copy_file(id_dir("agent.node2") / "key.pem", id_dir("agent.node1") / "key.pem",
                fs::copy_options::overwrite_existing);
  const Status s = load();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(s.message(), "does not belong to the certificate")) << s;
}

TEST_F(CredentialsTest, PermissionsOfAnotherIdentityAreNamed) {
  issue_ok(Role::kAgent, "node2");
  fs::copy_file(id_dir("agent.node2") / "permissions.p7s", id_dir("agent.node1") / "permissions.p7s",
                fs::copy_options::overwrite_existing);
  const Status s = load();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(s.message(), "the permissions are for 'CN=node2, OU=agent, O=cloudmgr'")) << s;
}

TEST_F(CredentialsTest, SelfSignedPermissionsAreRefused) {
  // An agent signs its own permissions with its identity key (CVE-2023-24010's attack).
  const fs::path d = id_dir("agent.node1");
  auto forged = sign_document(slurp(d / "permissions.xml"), (d / "cert.pem").string(), (d / "key.pem").string());
  ASSERT_TRUE(forged.ok()) << forged.status();
  spit(d / "permissions.p7s", *forged);
  const Status s = load();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(s.message(), "not signed by the permissions CA")) << s;
}

TEST_F(CredentialsTest, AnIdentityOfAnotherCaIsRefused) {
  const std::string other = (dir_ / "other").string();
  ASSERT_TRUE(init({.dir = other}).ok());
  ASSERT_TRUE(issue({.dir = other, .role = Role::kAgent, .name = "node1"}).ok());
  fs::copy_file(fs::path(other) / "identities/agent.node1/cert.pem", id_dir("agent.node1") / "cert.pem",
                fs::copy_options::overwrite_existing);
  fs::copy_file(fs::path(other) / "identities/agent.node1/key.pem", id_dir("agent.node1") / "key.pem",
                fs::copy_options::overwrite_existing);
  const Status s = load();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(s.message(), "cert.pem': not signed by the CA in")) << s;
}

TEST_F(CredentialsTest, ExpiredAndNotYetValidIdentitiesAreRefused) {
  const std::int64_t now = now_ns();
  ASSERT_TRUE(issue({.dir = pki(),
                     .role = Role::kAgent,
                     .name = "node1",
                     .not_before_ns = now - 10 * kDayNs,
                     .not_after_ns = now - kDayNs,
                     .renew = true})
                  .ok());
  Status s = load();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(s.message(), "expired")) << s;
  ASSERT_TRUE(issue({.dir = pki(),
                     .role = Role::kAgent,
                     .name = "node1",
                     .not_before_ns = now + kDayNs,
                     .not_after_ns = now + 10 * kDayNs,
                     .renew = true})
                  .ok());
  s = load();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(s.message(), "not valid before")) << s;
}

TEST_F(CredentialsTest, ExpiredPermissionsAloneAreRefused) {
  const fs::path d = id_dir("agent.node1");
  const std::int64_t now_s = now_ns() / 1'000'000'000;
  const std::string doc = permissions_document(Role::kAgent, "node1", now_s - 864000, now_s - 86400);
  auto signed_doc = sign_document(doc, pki() + "/permissions_ca.pem", pki() + "/private/permissions_ca.key");
  ASSERT_TRUE(signed_doc.ok()) << signed_doc.status();
  spit(d / "permissions.p7s", *signed_doc);
  const Status s = load();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(s.message(), "permissions.p7s': the permissions expired")) << s;
}

TEST_F(CredentialsTest, ATamperedGovernanceIsRefused) {
  std::string gov = slurp(dir_ / "pki" / "governance.p7s");
  const std::size_t at = gov.find("ENCRYPT");
  ASSERT_NE(at, std::string::npos);
  gov.replace(at, 7, "NONE   ");
  spit(dir_ / "pki" / "governance.p7s", gov);
  const Status s = load();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(s.message(), "governance.p7s")) << s;
}

TEST_F(CredentialsTest, OneCaForBothIsRefused) {
  fs::copy_file(dir_ / "pki" / "identity_ca.pem", dir_ / "pki" / "permissions_ca.pem",
                fs::copy_options::overwrite_existing);
  const Status s = load();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(s.message(), "CVE-2023-24010")) << s;
}

TEST_F(CredentialsTest, PermissionsOfAnOlderVersionAreNamedAndIssueUpdatesThem) {
  // As an older cloudmgr signed them: without a topic added since.
  const fs::path d = id_dir("agent.node1");
  std::string doc = slurp(d / "permissions.xml");
  const std::string topic = "            <topic>cloudmgr/AuditReply</topic>\n";
  ASSERT_NE(doc.find(topic), std::string::npos) << doc;
  doc.erase(doc.find(topic), topic.size());
  auto old = sign_document(doc, pki() + "/permissions_ca.pem", pki() + "/private/permissions_ca.key");
  ASSERT_TRUE(old.ok()) << old.status();
  spit(d / "permissions.p7s", *old);
  const std::string key = slurp(d / "key.pem");
  const std::string cert = slurp(d / "cert.pem");
  const Status s = load();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(s.message(), "made by another cloudmgr version")) << s;
  EXPECT_TRUE(contains(s.message(), "cloudctl pki issue agent node1")) << s;
  auto r = issue({.dir = pki(), .role = Role::kAgent, .name = "node1"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->files.size(), 2U);
  EXPECT_TRUE(load().ok()) << load();
  EXPECT_EQ(slurp(d / "key.pem"), key);
  EXPECT_EQ(slurp(d / "cert.pem"), cert);
}

}  // namespace
}  // namespace cloudmgr::pki
