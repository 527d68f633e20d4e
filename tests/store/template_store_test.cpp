// The built-in template store (lib/store/sqlite) against the TemplateStore contract, with
// real image files: qcow2 made by qemu-img, raw and sparse files made here.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <array>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cloudmgr/spi/template_store.h"
#include "cloudmgr/templates.h"
#include "store/sqlite/sqlite_template_store.h"

namespace cloudmgr {
namespace {

namespace fs = std::filesystem;

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (const char c : s) {
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  }
  return out + "'";
}

// The SHA-256 of a file by coreutils, independently of the store's code.
std::string sha256sum(const std::string& path) {
  const std::string cmd = "sha256sum " + shell_quote(path);
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(cmd.c_str(), "r"), ::pclose);
  if (!pipe) {
    return "";
  }
  std::string out(64, '\0');
  const std::size_t n = std::fread(out.data(), 1, out.size(), pipe.get());
  out.resize(n);
  return out;
}

// The SHA-256 of every byte of a file, read in full (holes and all) and hashed by OpenSSL:
// independent of the store's extent walking, and faster than sha256sum for 4 GiB.
std::string sha256_read_in_full(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    return "";
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<unsigned char> buf(1 << 20);
  ssize_t n = 0;
  while ((n = ::read(fd, buf.data(), buf.size())) > 0) {
    EVP_DigestUpdate(ctx, buf.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  EVP_DigestFinal_ex(ctx, digest.data(), &size);
  EVP_MD_CTX_free(ctx);
  std::string hex;
  for (unsigned int i = 0; i < size; ++i) {
    hex += fmt::format("{:02x}", digest[i]);
  }
  return n < 0 ? "" : hex;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// A raw image of `size` bytes whose content depends on `seed`.
void make_raw(const std::string& path, std::size_t size, unsigned seed) {
  std::string bytes(size, '\0');
  for (std::size_t i = 0; i < size; ++i) {
    bytes[i] = static_cast<char>((i * 31 + std::size_t{seed} * 131 + i / 4096) & 0xff);
  }
  write_bytes(path, bytes);
}

// Flips one byte of a (possibly read-only) file.
void flip_byte(const std::string& path, off_t offset) {
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  unsigned char b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, offset), 1);
  b = static_cast<unsigned char>(b ^ 0x5a);
  ASSERT_EQ(::pwrite(fd, &b, 1, offset), 1);
  ::close(fd);
}

std::size_t count_files(const std::string& dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) {
    ++n;
  }
  return n;
}

TemplateSpec small_spec() {
  TemplateSpec spec;
  spec.vcpus = 2;
  spec.memory_bytes = 512 * kMiB;
  spec.nics = {NicSpec{.source = "default", .mac = "", .model = "virtio"}};
  spec.metadata = {{"os", "debian-12"}};
  return spec;
}

spi::ImportRequest request(const std::string& name, const std::string& path) {
  spi::ImportRequest r;
  r.name = name;
  r.spec = small_spec();
  r.image_path = path;
  return r;
}

void expect_code(const Status& s, StatusCode code, const std::string& must_mention = "") {
  EXPECT_EQ(s.code(), code) << s;
  EXPECT_NE(s.message().find(must_mention), std::string::npos) << "message: " << s.message();
}

// Each test in its own directory: `work_` for source files, `store_dir_` for the store.
class TemplateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "template-store-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    work_ = root_ + "/work";
    store_dir_ = root_ + "/store";
    fs::create_directories(work_);
    Result<std::unique_ptr<spi::TemplateStore>> s = spi::open_template_store(store_dir_);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }

  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  std::string work(const std::string& name) const { return work_ + "/" + name; }
  std::string images() const { return store_dir_ + "/images"; }
  std::string image_path(const std::string& sha) const { return images() + "/" + sha; }

  std::string make_qcow2(const std::string& name, const std::string& size = "64M") {
    std::string path = work(name);
    const std::string cmd = "qemu-img create -q -f qcow2 " + shell_quote(path) + " " + size;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;  // NOLINT(concurrency-mt-unsafe): test set-up
    return path;
  }

  TemplateInfo import_ok(const spi::ImportRequest& r) {
    Result<TemplateInfo> info = store_->import(r);
    EXPECT_TRUE(info.ok()) << info.status();
    return info.ok() ? *info : TemplateInfo{};
  }

  std::string root_;
  std::string work_;
  std::string store_dir_;
  std::unique_ptr<spi::TemplateStore> store_;
};

TEST_F(TemplateStoreTest, ImportsQcow2) {
  const std::string path = make_qcow2("base.qcow2");
  const TemplateInfo info = import_ok(request("web", path));
  EXPECT_EQ(info.name, "web");
  EXPECT_EQ(info.version, 1U);
  EXPECT_EQ(info.spec, small_spec());
  EXPECT_EQ(info.image.format, ImageFormat::kQcow2);
  EXPECT_EQ(info.image.virtual_size_bytes, 64 * kMiB);
  EXPECT_EQ(info.image.size_bytes, fs::file_size(path));
  EXPECT_EQ(info.image.sha256, sha256sum(path));
  EXPECT_EQ(info.origin, "import " + path);
  EXPECT_GT(info.created_ns, 0);

  struct stat st {};
  ASSERT_EQ(::stat(image_path(info.image.sha256).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0444U);
  EXPECT_TRUE(fs::exists(path)) << "a copy leaves the source";

  Result<TemplateInfo> got = store_->get({"web", 0});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, info);
  Result<std::vector<TemplateInfo>> all = store_->list();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 1U);
  EXPECT_EQ(all->front(), info);
  EXPECT_EQ(store_->dir(), fs::path(store_dir_).lexically_normal().string());
}

TEST_F(TemplateStoreTest, ImportsRawWithItsLengthAsVirtualSize) {
  const std::string path = work("disk.img");
  make_raw(path, 3 * kMiB + 512, 1);
  spi::ImportRequest r = request("db", path);
  r.origin = "capture node-a/db1";
  const TemplateInfo info = import_ok(r);
  EXPECT_EQ(info.image.format, ImageFormat::kRaw);
  EXPECT_EQ(info.image.size_bytes, 3 * kMiB + 512);
  EXPECT_EQ(info.image.virtual_size_bytes, 3 * kMiB + 512);
  EXPECT_EQ(info.image.sha256, sha256sum(path));
  EXPECT_EQ(sha256sum(image_path(info.image.sha256)), info.image.sha256);
  EXPECT_EQ(info.origin, "capture node-a/db1");
}

TEST_F(TemplateStoreTest, EachImportAddsTheNextVersion) {
  for (unsigned v = 1; v <= 3; ++v) {
    const std::string path = work("v" + std::to_string(v));
    make_raw(path, kMiB, v);
    EXPECT_EQ(import_ok(request("web", path)).version, v);
  }
  make_raw(work("other"), kMiB, 9);
  EXPECT_EQ(import_ok(request("db", work("other"))).version, 1U);

  Result<std::vector<TemplateInfo>> versions = store_->versions("web");
  ASSERT_TRUE(versions.ok()) << versions.status();
  ASSERT_EQ(versions->size(), 3U);
  for (unsigned i = 0; i < 3; ++i) {
    EXPECT_EQ((*versions)[i].version, i + 1);
    EXPECT_EQ((*versions)[i].image.sha256, sha256sum(work("v" + std::to_string(i + 1))));
  }
  EXPECT_EQ(store_->get({"web", 0})->version, 3U);
  EXPECT_EQ(store_->get({"web", 2})->image.sha256, sha256sum(work("v2")));
  expect_code(store_->get({"web", 4}).status(), StatusCode::kNotFound, "web:4");
  expect_code(store_->get({"nope", 0}).status(), StatusCode::kNotFound, "'nope'");
  expect_code(store_->versions("nope").status(), StatusCode::kNotFound, "'nope'");

  Result<std::vector<TemplateInfo>> latest = store_->list();
  ASSERT_TRUE(latest.ok()) << latest.status();
  ASSERT_EQ(latest->size(), 2U);
  EXPECT_EQ((*latest)[0].name, "db");
  EXPECT_EQ((*latest)[0].version, 1U);
  EXPECT_EQ((*latest)[1].name, "web");
  EXPECT_EQ((*latest)[1].version, 3U);
}

TEST_F(TemplateStoreTest, DetectsTheFormatAndRefusesADisagreement) {
  const std::string qcow2 = make_qcow2("a.qcow2");
  const std::string raw = work("b.img");
  make_raw(raw, kMiB, 2);

  spi::ImportRequest r = request("web", qcow2);
  r.format = ImageFormat::kRaw;
  expect_code(store_->import(r).status(), StatusCode::kInvalidArgument, "is a qcow2 image, not raw");
  r = request("web", raw);
  r.format = ImageFormat::kQcow2;
  expect_code(store_->import(r).status(), StatusCode::kInvalidArgument, "is not a qcow2 image");
  expect_code(store_->versions("web").status(), StatusCode::kNotFound);
  EXPECT_EQ(count_files(images()), 0U);

  r = request("web", qcow2);
  r.format = ImageFormat::kQcow2;
  EXPECT_EQ(import_ok(r).image.format, ImageFormat::kQcow2);
  r = request("web", raw);
  r.format = ImageFormat::kRaw;
  EXPECT_EQ(import_ok(r).image.format, ImageFormat::kRaw);
}

TEST_F(TemplateStoreTest, RefusesAQcow2WithABackingFile) {
  const std::string base = make_qcow2("base.qcow2");
  const std::string overlay = work("overlay.qcow2");
  const std::string cmd = "qemu-img create -q -f qcow2 -b " + shell_quote(base) + " -F qcow2 " + shell_quote(overlay);
  ASSERT_EQ(std::system(cmd.c_str()), 0);  // NOLINT(concurrency-mt-unsafe): test set-up
  const Status s = store_->import(request("web", overlay)).status();
  expect_code(s, StatusCode::kInvalidArgument, "has a backing file '" + base + "'");
  expect_code(s, StatusCode::kInvalidArgument, "a base image must stand alone (flatten it: qemu-img convert -O qcow2");
  EXPECT_EQ(count_files(images()), 0U);
  EXPECT_EQ(count_files(store_dir_ + "/tmp"), 0U);
}

TEST_F(TemplateStoreTest, RefusesUnsupportedQcow2Headers) {
  // Version 4 and a header cut short, both starting with the qcow2 magic.
  std::string header(104, '\0');
  header.replace(0, 4, "QFI\xfb");
  header[7] = 4;
  write_bytes(work("v4.qcow2"), header);
  expect_code(store_->import(request("web", work("v4.qcow2"))).status(), StatusCode::kInvalidArgument, "of version 4");
  write_bytes(work("short.qcow2"), header.substr(0, 40));
  expect_code(store_->import(request("web", work("short.qcow2"))).status(), StatusCode::kInvalidArgument, "cut short");
  write_bytes(work("empty.img"), "");
  expect_code(store_->import(request("web", work("empty.img"))).status(), StatusCode::kInvalidArgument, "is empty");
}

TEST_F(TemplateStoreTest, RefusesBadRequestsNamingWhatIsWrong) {
  make_raw(work("a.img"), kMiB, 3);
  expect_code(store_->import(request("web", work("missing.img"))).status(), StatusCode::kNotFound, "missing.img");
  expect_code(store_->import(request("web", work_)).status(), StatusCode::kFailedPrecondition, "not a regular file");
  expect_code(store_->import(request("bad name", work("a.img"))).status(), StatusCode::kInvalidArgument, "'bad name'");
  spi::ImportRequest r = request("web", work("a.img"));
  r.spec.nics[0].mac = "52:54:00:00:00:01";
  expect_code(store_->import(r).status(), StatusCode::kInvalidArgument, "nics[0].mac must be empty");
  expect_code(spi::open_template_store("").status(), StatusCode::kInvalidArgument);
  EXPECT_EQ(count_files(images()), 0U);
}

TEST_F(TemplateStoreTest, TheSameImageIsStoredOnce) {
  const std::string path = make_qcow2("base.qcow2");
  const TemplateInfo a = import_ok(request("web", path));
  const TemplateInfo b = import_ok(request("web", path));
  const TemplateInfo c = import_ok(request("api", path));
  EXPECT_EQ(b.version, 2U);
  EXPECT_EQ(a.image, b.image);
  EXPECT_EQ(a.image, c.image);
  EXPECT_EQ(count_files(images()), 1U);
  EXPECT_EQ(count_files(store_dir_ + "/tmp"), 0U);
}

TEST_F(TemplateStoreTest, ASparseImageStaysSparseAndHashesLikeItsBytes) {
  constexpr off_t kSize = 4LL * 1024 * 1024 * 1024;
  const std::string path = work("sparse.img");
  {
    const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, kSize), 0);
    const std::string block(4096, 'x');
    for (const off_t at : {off_t{0}, off_t{1} << 30, kSize / 2 + 12345, kSize - 4096}) {
      ASSERT_EQ(::pwrite(fd, block.data(), block.size(), at), static_cast<ssize_t>(block.size()));
    }
    ::close(fd);
  }
  const TemplateInfo info = import_ok(request("big", path));
  EXPECT_EQ(info.image.size_bytes, static_cast<std::uint64_t>(kSize));
  EXPECT_EQ(info.image.virtual_size_bytes, static_cast<std::uint64_t>(kSize));
  EXPECT_EQ(info.image.sha256, sha256_read_in_full(path));

  struct stat st {};
  ASSERT_EQ(::stat(image_path(info.image.sha256).c_str(), &st), 0);
  EXPECT_EQ(st.st_size, kSize);
  EXPECT_LT(st.st_blocks * 512, 4 * 1024 * 1024) << "the holes were written out";
}

TEST_F(TemplateStoreTest, RemoveDeletesAnImageOnlyWhenNoVersionUsesIt) {
  make_raw(work("a.img"), kMiB, 1);
  make_raw(work("b.img"), kMiB, 2);
  const TemplateInfo web1 = import_ok(request("web", work("a.img")));
  const TemplateInfo web2 = import_ok(request("web", work("b.img")));
  const TemplateInfo other = import_ok(request("other", work("a.img")));
  ASSERT_EQ(count_files(images()), 2U);

  ASSERT_TRUE(store_->remove({"web", 1}).ok());
  EXPECT_TRUE(fs::exists(image_path(web1.image.sha256))) << "other:1 still uses it";
  Result<std::vector<TemplateInfo>> left = store_->versions("web");
  ASSERT_TRUE(left.ok()) << left.status();
  ASSERT_EQ(left->size(), 1U);
  EXPECT_EQ(left->front().version, 2U);
  expect_code(store_->remove({"web", 1}), StatusCode::kNotFound, "web:1");

  ASSERT_TRUE(store_->remove({"other", 0}).ok());
  EXPECT_FALSE(fs::exists(image_path(other.image.sha256)));
  EXPECT_TRUE(fs::exists(image_path(web2.image.sha256)));

  ASSERT_TRUE(store_->remove({"web", 0}).ok());
  EXPECT_EQ(count_files(images()), 0U);
  expect_code(store_->versions("web").status(), StatusCode::kNotFound);
  expect_code(store_->remove({"web", 0}), StatusCode::kNotFound, "'web'");
  EXPECT_TRUE(store_->list()->empty());

  // A removed version's number is never given to another image: web had 1 and 2.
  EXPECT_EQ(import_ok(request("web", work("a.img"))).version, 3U);
}

TEST_F(TemplateStoreTest, RemovingTheLatestVersionDoesNotFreeItsNumber) {
  make_raw(work("a.img"), kMiB, 1);
  make_raw(work("b.img"), kMiB, 2);
  import_ok(request("web", work("a.img")));
  import_ok(request("web", work("a.img")));
  ASSERT_TRUE(store_->remove({"web", 2}).ok());
  const TemplateInfo next = import_ok(request("web", work("b.img")));
  EXPECT_EQ(next.version, 3U) << "web:2 named another image; it must never name this one";
  expect_code(store_->get({"web", 2}).status(), StatusCode::kNotFound, "web:2");
  // It survives reopening the store.
  store_.reset();
  auto reopened = spi::open_template_store(store_dir_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  store_ = std::move(*reopened);
  EXPECT_EQ(import_ok(request("web", work("a.img"))).version, 4U);
}

TEST_F(TemplateStoreTest, VerifyDetectsAFlippedByte) {
  make_raw(work("a.img"), 2 * kMiB, 4);
  import_ok(request("web", work("a.img")));
  const TemplateInfo info = import_ok(request("web", make_qcow2("b.qcow2")));
  ASSERT_TRUE(store_->verify({"web", 0}).ok());
  ASSERT_TRUE(store_->verify({"web", 1}).ok());
  flip_byte(image_path(info.image.sha256), 100);
  const Status s = store_->verify({"web", 2});
  expect_code(s, StatusCode::kDataLoss,
              "template web:2: image " + info.image.sha256 + " is corrupt: its SHA-256 is now " +
                  sha256sum(image_path(info.image.sha256)));
  EXPECT_TRUE(store_->verify({"web", 1}).ok());
  expect_code(store_->verify({"web", 3}), StatusCode::kNotFound);
}

TEST_F(TemplateStoreTest, ImageSaysDataLossForATruncatedOrMissingFile) {
  make_raw(work("a.img"), 2 * kMiB, 5);
  const TemplateInfo info = import_ok(request("web", work("a.img")));
  Result<spi::ImageFile> file = store_->image(info.image.sha256);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->path, image_path(info.image.sha256));
  EXPECT_EQ(file->info, info.image);

  ASSERT_EQ(::chmod(file->path.c_str(), 0644), 0);
  ASSERT_EQ(::truncate(file->path.c_str(), kMiB), 0);
  expect_code(store_->image(info.image.sha256).status(), StatusCode::kDataLoss, file->path);
  expect_code(store_->verify({"web", 0}), StatusCode::kDataLoss, "web:1");
  ASSERT_EQ(::unlink(file->path.c_str()), 0);
  expect_code(store_->image(info.image.sha256).status(), StatusCode::kDataLoss, "missing");
  expect_code(store_->image(std::string(64, '0')).status(), StatusCode::kNotFound);
  expect_code(store_->image("not-a-hash").status(), StatusCode::kInvalidArgument);
}

TEST_F(TemplateStoreTest, ExportAndImportExportRoundTrip) {
  spi::ImportRequest r = request("web", make_qcow2("base.qcow2"));
  r.spec.description = "web tier";
  r.spec.data_disks = {{.size_bytes = 10 * kGiB, .bus = DiskBus::kSata}};
  import_ok(request("web", work("base.qcow2")));
  const TemplateInfo original = import_ok(r);
  const std::string out = root_ + "/export";
  fs::create_directories(out);

  Result<std::vector<std::string>> paths = store_->export_to({"web", 2}, out);
  ASSERT_TRUE(paths.ok()) << paths.status();
  ASSERT_EQ(paths->size(), 2U);
  EXPECT_EQ((*paths)[0], out + "/web-2.json");
  EXPECT_EQ((*paths)[1], out + "/web-2.qcow2");
  Result<TemplateInfo> written = template_info_from_json(read_text((*paths)[0]));
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(*written, original);
  EXPECT_EQ(sha256sum((*paths)[1]), original.image.sha256);
  EXPECT_EQ(count_files(out), 2U) << "no temporaries left";

  expect_code(store_->export_to({"web", 2}, out).status(), StatusCode::kAlreadyExists, "web-2");
  expect_code(store_->export_to({"web", 7}, out).status(), StatusCode::kNotFound);
  expect_code(store_->export_to({"web", 2}, root_ + "/nowhere").status(), StatusCode::kNotFound, "nowhere");

  // Into another store: version 1 there, the same spec and image.
  Result<std::unique_ptr<spi::TemplateStore>> other = spi::open_template_store(root_ + "/other");
  ASSERT_TRUE(other.ok()) << other.status();
  Result<TemplateInfo> imported = (*other)->import_export((*paths)[0], "");
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->name, "web");
  EXPECT_EQ(imported->version, 1U);
  EXPECT_EQ(imported->spec, original.spec);
  EXPECT_EQ(imported->image, original.image);
  EXPECT_TRUE((*other)->verify({"web", 1}).ok());

  // Back into this one under another name, and as the next version of its own.
  Result<TemplateInfo> copy = store_->import_export((*paths)[0], "copy");
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ(copy->ref(), (TemplateRef{"copy", 1}));
  Result<TemplateInfo> again = store_->import_export((*paths)[0], "");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->ref(), (TemplateRef{"web", 3}));
  EXPECT_EQ(count_files(images()), 1U);
}

TEST_F(TemplateStoreTest, ImportExportOfACorruptedImageIsDataLossAndImportsNothing) {
  make_raw(work("a.img"), 2 * kMiB, 6);
  import_ok(request("web", work("a.img")));
  const std::string out = root_ + "/export";
  fs::create_directories(out);
  Result<std::vector<std::string>> paths = store_->export_to({"web", 0}, out);
  ASSERT_TRUE(paths.ok()) << paths.status();
  EXPECT_EQ((*paths)[1], out + "/web-1.img");
  flip_byte((*paths)[1], 4096);

  Result<std::unique_ptr<spi::TemplateStore>> other = spi::open_template_store(root_ + "/other");
  ASSERT_TRUE(other.ok()) << other.status();
  expect_code((*other)->import_export((*paths)[0], "").status(), StatusCode::kDataLoss, (*paths)[1]);
  EXPECT_TRUE((*other)->list()->empty());
  EXPECT_EQ(count_files(root_ + "/other/images"), 0U);
  EXPECT_EQ(count_files(root_ + "/other/tmp"), 0U);

  // A missing image and a broken JSON file.
  ASSERT_EQ(::unlink((*paths)[1].c_str()), 0);
  expect_code((*other)->import_export((*paths)[0], "").status(), StatusCode::kNotFound, "web-1.img");
  write_bytes(out + "/bad.json", R"({"name": "web"})");
  expect_code((*other)->import_export(out + "/bad.json", "").status(), StatusCode::kInvalidArgument, "bad.json");
  expect_code((*other)->import_export(out + "/none.json", "").status(), StatusCode::kNotFound, "none.json");
}

TEST_F(TemplateStoreTest, ExportRefusesACorruptImage) {
  make_raw(work("a.img"), 2 * kMiB, 7);
  const TemplateInfo info = import_ok(request("web", work("a.img")));
  flip_byte(image_path(info.image.sha256), 10);
  const std::string out = root_ + "/export";
  fs::create_directories(out);
  expect_code(store_->export_to({"web", 1}, out).status(), StatusCode::kDataLoss, "is corrupt");
  EXPECT_EQ(count_files(out), 0U);
}

TEST_F(TemplateStoreTest, TakeFileMovesTheFileIntoTheStore) {
  Result<std::string> incoming = store_->incoming_path();
  ASSERT_TRUE(incoming.ok()) << incoming.status();
  EXPECT_EQ(fs::path(*incoming).parent_path(), fs::path(store_dir_) / "tmp");
  make_raw(*incoming, 3 * kMiB, 8);
  const std::string sha = sha256sum(*incoming);
  spi::ImportRequest r = request("web", *incoming);
  r.take_file = true;
  const TemplateInfo info = import_ok(r);
  EXPECT_EQ(info.image.sha256, sha);
  EXPECT_FALSE(fs::exists(*incoming));
  EXPECT_EQ(sha256sum(image_path(sha)), sha);
  struct stat st {};
  ASSERT_EQ(::stat(image_path(sha).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0444U);

  // The same bytes again: the store keeps its copy and the file still goes.
  Result<std::string> second = store_->incoming_path();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(*second, *incoming);
  make_raw(*second, 3 * kMiB, 8);
  r.image_path = *second;
  EXPECT_EQ(import_ok(r).version, 2U);
  EXPECT_FALSE(fs::exists(*second));
  EXPECT_EQ(count_files(images()), 1U);
  EXPECT_EQ(count_files(store_dir_ + "/tmp"), 0U);

  // A failed take_file leaves the file where it was, as it was.
  Result<std::string> third = store_->incoming_path();
  ASSERT_TRUE(third.ok()) << third.status();
  make_raw(*third, kMiB, 9);
  r.image_path = *third;
  r.spec.vcpus = 0;
  expect_code(store_->import(r).status(), StatusCode::kInvalidArgument, "vcpus");
  EXPECT_TRUE(fs::exists(*third));
  r.spec.vcpus = 1;
  r.format = ImageFormat::kQcow2;
  expect_code(store_->import(r).status(), StatusCode::kInvalidArgument, "not a qcow2 image");
  EXPECT_TRUE(fs::exists(*third));
  struct stat mode {};
  ASSERT_EQ(::stat(third->c_str(), &mode), 0);
  EXPECT_NE(mode.st_mode & 0200, 0U) << "still writable: left as it was";
  // A symbolic link is not moved.
  const std::string link = work("link.img");
  fs::create_symlink(*third, link);
  r.image_path = link;
  r.format.reset();
  expect_code(store_->import(r).status(), StatusCode::kFailedPrecondition, "symbolic link");
  EXPECT_TRUE(fs::exists(*third));
}

TEST_F(TemplateStoreTest, OpenRemovesLeftoverTemporariesButNotOnesInUse) {
  Result<std::string> in_use = store_->incoming_path();
  ASSERT_TRUE(in_use.ok()) << in_use.status();
  const std::string leftover = store_dir_ + "/tmp/import-crashed";
  make_raw(leftover, kMiB, 10);
  ASSERT_EQ(::chmod(leftover.c_str(), 0444), 0);

  Result<std::unique_ptr<spi::TemplateStore>> second = spi::open_template_store(store_dir_);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(fs::exists(leftover));
  EXPECT_TRUE(fs::exists(*in_use)) << "the first store still holds it";

  second->reset();
  store_.reset();
  Result<std::unique_ptr<spi::TemplateStore>> third = spi::open_template_store(store_dir_);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_FALSE(fs::exists(*in_use)) << "nobody holds it any more";
}

TEST_F(TemplateStoreTest, OpenRemovesImagesNoRowNames) {
  make_raw(work("a.img"), kMiB, 11);
  const TemplateInfo info = import_ok(request("web", work("a.img")));
  const std::string orphan = image_path(std::string(64, 'b'));
  write_bytes(orphan, "left by a crash between rename and commit");
  store_.reset();
  Result<std::unique_ptr<spi::TemplateStore>> again = spi::open_template_store(store_dir_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(fs::exists(orphan));
  EXPECT_TRUE(fs::exists(image_path(info.image.sha256)));
  Result<TemplateInfo> kept = (*again)->get({"web", 1});
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(*kept, info);
}

TEST_F(TemplateStoreTest, AFileThatIsNotACatalogIsUnavailable) {
  const std::string dir = root_ + "/foreign";
  fs::create_directories(dir);
  write_bytes(dir + "/catalog.db", std::string(4096, 'x'));
  expect_code(spi::open_template_store(dir).status(), StatusCode::kUnavailable, dir + "/catalog.db");
  EXPECT_EQ(read_text(dir + "/catalog.db"), std::string(4096, 'x')) << "left as it was";

  const std::string other = root_ + "/other-db";
  fs::create_directories(other);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((other + "/catalog.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  expect_code(spi::open_template_store(other).status(), StatusCode::kUnavailable, "not a cloudmgr template catalog");
}

TEST_F(TemplateStoreTest, TheCatalogSurvivesAReopen) {
  make_raw(work("a.img"), kMiB, 12);
  const TemplateInfo info = import_ok(request("web", work("a.img")));
  store_.reset();
  Result<std::unique_ptr<spi::TemplateStore>> again = spi::open_template_store(store_dir_);
  ASSERT_TRUE(again.ok()) << again.status();
  Result<std::vector<TemplateInfo>> all = (*again)->list();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 1U);
  EXPECT_EQ(all->front(), info);
}

TEST_F(TemplateStoreTest, ConcurrentImportsOfOneNameGetDistinctVersions) {
  constexpr int kThreads = 2;
  constexpr int kEach = 4;
  for (int i = 0; i < kThreads * kEach; ++i) {
    make_raw(work("img" + std::to_string(i)), kMiB, static_cast<unsigned>(100 + i));
  }
  // Two stores on one directory as well as two threads: the write lock, not the mutex,
  // must keep versions apart.
  Result<std::unique_ptr<spi::TemplateStore>> second = spi::open_template_store(store_dir_);
  ASSERT_TRUE(second.ok()) << second.status();
  std::vector<std::vector<std::uint32_t>> got(kThreads);
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      spi::TemplateStore& store = t == 0 ? *store_ : **second;
      for (int i = 0; i < kEach; ++i) {
        Result<TemplateInfo> info = store.import(request("web", work("img" + std::to_string(t * kEach + i))));
        got[static_cast<std::size_t>(t)].push_back(info.ok() ? info->version : 0);
      }
    });
  }
  for (std::thread& th : threads) {
    th.join();
  }
  std::set<std::uint32_t> versions;
  for (const auto& list : got) {
    for (const std::uint32_t v : list) {
      EXPECT_NE(v, 0U);
      versions.insert(v);
    }
  }
  EXPECT_EQ(versions.size(), static_cast<std::size_t>(kThreads * kEach));
  EXPECT_EQ(*versions.begin(), 1U);
  EXPECT_EQ(*versions.rbegin(), static_cast<std::uint32_t>(kThreads * kEach));
  EXPECT_EQ(store_->versions("web")->size(), static_cast<std::size_t>(kThreads * kEach));
  EXPECT_EQ(count_files(images()), static_cast<std::size_t>(kThreads * kEach));
}

// A full disk, as far as the process can tell: RLIMIT_FSIZE makes writes fail with EFBIG.
TEST_F(TemplateStoreTest, RunningOutOfSpaceIsResourceExhaustedNamingTheStore) {
  make_raw(work("a.img"), 4 * kMiB, 13);
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = kMiB;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  const Status s = store_->import(request("web", work("a.img"))).status();
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &old), 0);
  std::signal(SIGXFSZ, old_handler);
  expect_code(s, StatusCode::kResourceExhausted, "template store '" + store_->dir() + "'");
  EXPECT_EQ(count_files(store_dir_ + "/tmp"), 0U);
  EXPECT_EQ(count_files(images()), 0U);
  expect_code(store_->versions("web").status(), StatusCode::kNotFound);
}

TEST(TemplateStoreErrors, ErrnoValuesMapToCanonicalCodes) {
  using sqlite::status_code_for_errno;
  EXPECT_EQ(status_code_for_errno(ENOENT), StatusCode::kNotFound);
  EXPECT_EQ(status_code_for_errno(EACCES), StatusCode::kPermissionDenied);
  EXPECT_EQ(status_code_for_errno(ENOSPC), StatusCode::kResourceExhausted);
  EXPECT_EQ(status_code_for_errno(EDQUOT), StatusCode::kResourceExhausted);
  EXPECT_EQ(status_code_for_errno(EEXIST), StatusCode::kAlreadyExists);
  EXPECT_EQ(status_code_for_errno(EXDEV), StatusCode::kFailedPrecondition);
  EXPECT_EQ(status_code_for_errno(EIO), StatusCode::kUnavailable);
  EXPECT_EQ(status_code_for_errno(EBADF), StatusCode::kInternal);
  const Status s = sqlite::errno_error(ENOSPC, "writing '/x'");
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(), "writing '/x': No space left on device");
  EXPECT_EQ(sqlite::errno_error(0, "w").code(), StatusCode::kInternal);
}

TEST(TemplateStoreErrors, OpenSslErrorsKeepTheQueueTextAndDrainIt) {
  ERR_clear_error();
  // A digest that does not exist fails and leaves an entry on the queue.
  EXPECT_EQ(EVP_MD_fetch(nullptr, "no-such-digest", nullptr), nullptr);
  ASSERT_NE(ERR_peek_error(), 0UL);
  const Status s = sqlite::openssl_error("fetching a digest");
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_EQ(s.message().rfind("fetching a digest: error:", 0), 0U) << s.message();
  EXPECT_EQ(ERR_peek_error(), 0UL);
  EXPECT_NE(sqlite::openssl_error("again").message().find("no error recorded"), std::string::npos);
}

}  // namespace
}  // namespace cloudmgr
