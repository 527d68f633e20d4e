// Aligned text tables for the command-line tools.
#pragma once

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace cloudmgr::tools {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}

  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  bool empty() const { return rows_.empty(); }

  void print(std::FILE* out = stdout) const {
    std::vector<std::size_t> width(header_.size(), 0);
    auto measure = [&](const std::vector<std::string>& row) {
      for (std::size_t i = 0; i < row.size() && i < width.size(); ++i) {
        width[i] = std::max(width[i], row[i].size());
      }
    };
    measure(header_);
    for (const auto& row : rows_) {
      measure(row);
    }
    auto line = [&](const std::vector<std::string>& row) {
      std::string text;
      for (std::size_t i = 0; i < width.size(); ++i) {
        const std::string cell = i < row.size() ? row[i] : "";
        text += cell;
        if (i + 1 < width.size()) {
          text.append(width[i] - cell.size() + 2, ' ');
        }
      }
      while (!text.empty() && text.back() == ' ') {
        text.pop_back();
      }
      std::fprintf(out, "%s\n", text.c_str());
    };
    line(header_);
    for (const auto& row : rows_) {
      line(row);
    }
  }

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace cloudmgr::tools
