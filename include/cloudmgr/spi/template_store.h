// Plug-in interface: the VM template store (catalog + base images) that a Manager owns.
//
// The built-in store (lib/store/sqlite) is one directory: a SQLite catalog
// (`catalog.db`) and the base images, content-addressed (`images/<sha256>`), each written
// to a temporary name, fsynced and renamed before the catalog points at it. Several
// processes may open the same directory at once. Nothing above this interface knows SQLite
// or the hash library.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cloudmgr/export.h"
#include "cloudmgr/status.h"
#include "cloudmgr/templates.h"

namespace cloudmgr::spi {

struct ImportRequest {
  std::string name;        // validate_template_name
  TemplateSpec spec;       // validate_template_spec
  std::string image_path;  // a qcow2 or raw file
  // nullopt = detected: qcow2 by its header, raw otherwise. Given, it must agree with the
  // header (a qcow2 file is never taken as raw, nor a raw one as qcow2).
  std::optional<ImageFormat> format;
  std::string origin;  // recorded as TemplateInfo::origin; empty = "import <image_path>"
  // Move the file into the store instead of copying it (it must be on the store's file
  // system, e.g. a path from incoming_path()); on failure it is left where it was.
  bool take_file = false;
};

// A base image ready to be read, e.g. to send it to a host.
struct ImageFile {
  std::string path;
  ImageInfo info;
};

class CLOUDMGR_API TemplateStore {
 public:
  TemplateStore() = default;
  virtual ~TemplateStore();
  TemplateStore(const TemplateStore&) = delete;
  TemplateStore& operator=(const TemplateStore&) = delete;

  // The store's directory.
  virtual std::string dir() const = 0;

  // Adds the next version of request.name: 1 for a new name, else one more than the highest
  // version it ever had (a removed version's number is never given again: VMs and exports
  // name their template by name:version). The image is
  // hashed while it is copied (holes in a sparse file stay holes); an image already in the
  // store under the same SHA-256 is stored once. Atomic: after a failure or a crash the
  // catalog and the images are as before (a half-written image is a temporary file that
  // open removes).
  // Errors: kInvalidArgument (name, spec, format that disagrees with the file, a qcow2
  // image with a backing file: a base must stand alone), kNotFound (no such file),
  // kFailedPrecondition (not a regular file), kResourceExhausted (disk full), kInternal.
  virtual Result<TemplateInfo> import(const ImportRequest& request) = 0;

  // The latest version of every template, by name.
  virtual Result<std::vector<TemplateInfo>> list() = 0;
  // Every version of one template, oldest first; kNotFound naming it.
  virtual Result<std::vector<TemplateInfo>> versions(const std::string& name) = 0;
  // One version (ref.version 0 = the latest); kNotFound naming the ref.
  virtual Result<TemplateInfo> get(const TemplateRef& ref) = 0;

  // Removes one version (ref.version 0 = every version of the name). An image goes when no
  // version uses it any more. kNotFound naming the ref. (Whether VMs still depend on it is
  // the Manager's question: it sees the cloud.)
  virtual Status remove(const TemplateRef& ref) = 0;

  // The image of a template version for reading. The caller hashes what it reads and
  // trusts nothing that does not match info.sha256. kNotFound when the catalog has no such
  // image; kDataLoss when the file is missing or its length is wrong.
  virtual Result<ImageFile> image(const std::string& sha256) = 0;

  // Re-hashes a version's image (ref.version 0 = the latest). kDataLoss naming the template,
  // the expected and the actual SHA-256 when they differ.
  virtual Status verify(const TemplateRef& ref) = 0;

  // Writes <dir>/<name>-<version>.json (the TemplateInfo) and the image beside it
  // (<name>-<version>.qcow2 or .img, sparse), each to a temporary name then renamed.
  // Returns both paths, JSON first. kAlreadyExists when either file exists; kNotFound for
  // a missing directory or ref; kDataLoss (nothing written) when the stored image no longer
  // has its SHA-256, which the copy checks.
  virtual Result<std::vector<std::string>> export_to(const TemplateRef& ref, const std::string& dir) = 0;

  // Imports what export_to wrote: the image beside the JSON file, named from the JSON's name,
  // version and image format as export_to names it (<name>-<version>.qcow2 or .img), must
  // have the recorded SHA-256 (kDataLoss otherwise, and nothing is imported). `name` empty =
  // the exported name. The version is the next one of that name here, not the exported
  // number. kNotFound for a missing file; kInvalidArgument for a JSON file that is not an
  // export.
  virtual Result<TemplateInfo> import_export(const std::string& json_path, const std::string& name) = 0;

  // A new, unused path inside the store's directory for a file to import with take_file
  // (e.g. an image received from a host). The caller removes it if it is not imported.
  // The file exists (empty) so that the name stays taken; write into it in place rather than
  // renaming another file over it: while this store is open, no open() of the store removes it.
  virtual Result<std::string> incoming_path() = 0;
};

// Opens (creating if missing) the built-in store in `dir`. Temporary files a crash left
// behind are removed. kInvalidArgument for an empty path; kUnavailable when the directory
// cannot be created or its catalog cannot be opened or is not a cloudmgr catalog (the
// message names the file).
CLOUDMGR_API Result<std::unique_ptr<TemplateStore>> open_template_store(const std::string& dir);

}  // namespace cloudmgr::spi
