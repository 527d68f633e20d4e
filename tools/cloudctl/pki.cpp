#include "cloudctl/pki.h"

#include <ctime>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cloudmgr/pki.h"
#include "common/json.h"
#include "common/table.h"

namespace cloudctl {

namespace {

namespace pki = cloudmgr::pki;
using cloudmgr::tools::Table;

std::string date(std::int64_t ns) {
  const auto secs = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min);
}

Result<std::string> pki_dir(const Options& o) {
  if (o.pki.empty()) {
    return cloudmgr::invalid_argument_error("no PKI directory: give --pki DIR (or set $CLOUDMGR_PKI)");
  }
  return o.pki;
}

void print_files(const Options& o, const std::vector<std::string>& files) {
  if (o.json) {
    return;
  }
  for (const auto& f : files) {
    std::printf("  wrote %s\n", f.c_str());
  }
}

nlohmann::json identity_json(const pki::IdentityInfo& i) {
  return {{"role", pki::to_string(i.role)},
          {"name", i.name},
          {"subject", i.subject},
          {"dir", i.dir},
          {"cert_not_before_ns", i.cert_not_before_ns},
          {"cert_not_after_ns", i.cert_not_after_ns},
          {"permissions_not_before_ns", i.permissions_not_before_ns},
          {"permissions_not_after_ns", i.permissions_not_after_ns},
          {"ok", i.problem.empty()},
          {"problem", i.problem}};
}

struct InitArgs {
  std::string dir;
  std::string ca_dir;
  std::uint32_t days = 3650;
};

int cmd_init(const Options& o, const InitArgs& a) {
  auto r = pki::init({.dir = a.dir, .ca_dir = a.ca_dir, .ca_validity_days = a.days});
  if (!r.ok()) {
    return fail(r.status());
  }
  if (o.json) {
    print_json({{"dir", a.dir}, {"created", r->created}, {"files", r->files}});
  } else if (r->created) {
    std::printf("PKI created in %s (identity CA, permissions CA, signed governance)\n", a.dir.c_str());
    print_files(o, r->files);
  } else {
    std::printf("PKI in %s exists and is sound; nothing written\n", a.dir.c_str());
  }
  return kExitOk;
}

struct IssueArgs {
  std::string role;
  std::string name;
  std::string ca_dir;
  std::uint32_t days = 365;
  bool renew = false;
};

int cmd_issue(const Options& o, const IssueArgs& a) {
  auto dir = pki_dir(o);
  if (!dir.ok()) {
    return fail(dir.status());
  }
  auto role = pki::parse_role(a.role);
  if (!role.ok()) {
    return fail(role.status());
  }
  auto r = pki::issue(
      {.dir = *dir, .ca_dir = a.ca_dir, .role = *role, .name = a.name, .validity_days = a.days, .renew = a.renew});
  if (!r.ok()) {
    return fail(r.status());
  }
  const pki::IdentityInfo& i = r->identity;
  if (o.json) {
    nlohmann::json j = identity_json(i);
    j["created"] = r->created;
    j["files"] = r->files;
    print_json(j);
    return kExitOk;
  }
  if (r->files.empty()) {
    std::printf("identity %s.%s exists and is sound (valid until %s); nothing written\n", a.role.c_str(),
                a.name.c_str(), date(std::min(i.cert_not_after_ns, i.permissions_not_after_ns)).c_str());
  } else {
    std::printf("identity %s.%s %s: %s, valid until %s\n", a.role.c_str(), a.name.c_str(),
                r->created ? "issued" : "renewed", i.subject.c_str(),
                date(std::min(i.cert_not_after_ns, i.permissions_not_after_ns)).c_str());
    print_files(o, r->files);
  }
  return kExitOk;
}

int cmd_show(const Options& o) {
  auto dir = pki_dir(o);
  if (!dir.ok()) {
    return fail(dir.status());
  }
  auto list = pki::list(*dir);
  if (!list.ok()) {
    return fail(list.status());
  }
  if (o.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& i : *list) {
      j.push_back(identity_json(i));
    }
    print_json(j);
    return kExitOk;
  }
  Table t({"ROLE", "NAME", "SUBJECT", "CERT UNTIL", "PERMISSIONS UNTIL", "STATE"});
  for (const auto& i : *list) {
    t.add({std::string(pki::to_string(i.role)), i.name, i.subject,
           i.cert_not_after_ns != 0 ? date(i.cert_not_after_ns) : "-",
           i.permissions_not_after_ns != 0 ? date(i.permissions_not_after_ns) : "-",
           i.problem.empty() ? "ok" : i.problem});
  }
  if (t.empty()) {
    std::printf("no identities in %s (cloudctl pki issue manager|agent NAME)\n", dir->c_str());
    return kExitOk;
  }
  t.print();
  return kExitOk;
}

std::string args_text(const cloudmgr::Arguments& args) {
  std::string out;
  for (const auto& [k, v] : args) {
    out += fmt::format("{}{}={}", out.empty() ? "" : " ", k, v.size() > 40 ? v.substr(0, 37) + "..." : v);
  }
  return out;
}

std::string time_text(std::int64_t ns) {
  const auto secs = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec);
}

void print_audit(const Options& o, const std::vector<cloudmgr::AuditEntry>& entries) {
  if (o.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& e : entries) {
      j.push_back(cloudmgr::tools::to_json(e));
    }
    print_json(j);
    return;
  }
  Table t({"RECEIVED", "COMMAND", "ISSUER (AUTHENTICATED)", "CLAIMED", "TARGET", "VERB", "ARGUMENTS", "RESULT"});
  for (const auto& e : entries) {
    const std::string result = e.completed_ns == 0 ? "(no outcome)"
                               : e.result.ok()     ? "OK"
                                                   : std::string(cloudmgr::status_code_name(e.result.code()));
    t.add({time_text(e.received_ns), e.command_id.substr(0, 8), e.issuer.empty() ? "(unsecured)" : e.issuer,
           e.claimed_issuer, e.target.partition(), e.verb, args_text(e.arguments), result});
  }
  t.print();
}

struct AuditArgs {
  std::string host;
  std::string since;
  std::string local;
  std::size_t limit = 100;
};

int cmd_audit(const Options& o, const AuditArgs& a) {
  std::int64_t since = 0;
  if (!a.since.empty()) {
    auto d = cloudmgr::parse_duration_ns(a.since);
    if (!d.ok()) {
      return fail(d.status().with_context("--since"));
    }
    since = now_ns() - *d;
  }
  if (!a.local.empty()) {
    auto entries = cloudmgr::read_audit_log(a.local + "/audit.jsonl", since, a.limit);
    if (!entries.ok()) {
      return fail(entries.status());
    }
    print_audit(o, *entries);
    return kExitOk;
  }
  if (a.host.empty()) {
    return fail(cloudmgr::invalid_argument_error("audit needs a HOST (or --local STATE_DIR)"));
  }
  Session s(o);
  if (Status st = s.open(a.host); !st.ok()) {
    return fail(st);
  }
  cloudmgr::ExecuteOptions eo;
  eo.timeout = milliseconds(static_cast<std::int64_t>(o.timeout_s * 1000));
  auto r = s.m().execute(cloudmgr::Target::host(a.host), "host.audit",
                         {{"since_ns", std::to_string(since)}, {"max_entries", std::to_string(a.limit)}}, eo);
  if (!r.ok()) {
    return fail(r.status());
  }
  const cloudmgr::HostResult& h = r->hosts.at(0);
  if (h.outcome == cloudmgr::HostResult::Outcome::kNoReply) {
    std::fprintf(stderr, "cloudctl: host %s did not answer\n", a.host.c_str());
    return kExitNoReply;
  }
  if (!h.status.ok()) {
    return fail(h.status);
  }
  print_audit(o, h.reply.audit);
  return kExitOk;
}

}  // namespace

void add_pki_commands(CLI::App& app, Options& o, int& rc) {
  auto& audit = per_call<AuditArgs>();
  auto* audit_cmd = app.add_subcommand(
      "audit", "a host's audit log: every command it received, who sent it (as DDS-Security authenticated), outcome");
  audit_cmd->add_option("host", audit.host, "host id");
  audit_cmd->add_option("--since", audit.since, "only commands received this long ago or later (e.g. 2h)");
  audit_cmd->add_option("--limit", audit.limit, "at most the newest N entries (default 100)")
      ->check(CLI::Range(1, 10000));
  audit_cmd->add_option("--local", audit.local, "read the log from this agent state directory instead of the bus");
  audit_cmd->callback([&] { rc = cmd_audit(o, audit); });

  auto* pki_cmd = app.add_subcommand("pki", "the cloud's PKI for DDS-Security: CAs, identities, permissions");
  pki_cmd->require_subcommand(1);

  auto& init = per_call<InitArgs>();
  auto* init_cmd = pki_cmd->add_subcommand(
      "init", "create the identity CA, the permissions CA and the signed governance in DIR (idempotent)");
  init_cmd->add_option("dir", init.dir, "the PKI directory")->required();
  init_cmd->add_option("--ca-dir", init.ca_dir, "keep the CA private keys here instead of DIR/private");
  init_cmd->add_option("--days", init.days, "CA validity in days (default 3650)")->check(CLI::Range(1, 36500));
  init_cmd->callback([&] { rc = cmd_init(o, init); });

  auto& issue = per_call<IssueArgs>();
  auto* issue_cmd = pki_cmd->add_subcommand(
      "issue", "create an identity (key, certificate, signed permissions) for a manager or an agent's host");
  issue_cmd->add_option("role", issue.role, "manager or agent")->required()->check(CLI::IsMember({"manager", "agent"}));
  issue_cmd->add_option("name", issue.name, "the manager's name or the agent's host id")->required();
  issue_cmd->add_option("--ca-dir", issue.ca_dir, "where the CA private keys are (default PKI/private)");
  issue_cmd->add_option("--days", issue.days, "validity in days (default 365)")->check(CLI::Range(1, 36500));
  issue_cmd->add_flag("--renew", issue.renew, "re-issue the certificate and permissions for the existing key");
  issue_cmd->callback([&] { rc = cmd_issue(o, issue); });

  pki_cmd->add_subcommand("show", "identities, roles, expiry and whether each is sound")->callback([&] {
    rc = cmd_show(o);
  });
}

}  // namespace cloudctl
