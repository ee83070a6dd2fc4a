// scaling_fit: fits the seed papers' scaling laws to a CSV of training runs (explore/scaling_law.hpp) and writes
// the fitted curves with their confidence intervals for scripts/plot_scaling.py.
//
//   scaling_fit runs.csv [--x compute] [--y error] [--by model] [--level 0.95] [--out curves.csv]
//               [--params params.csv] [--points 64] [--extend 2] [--keep-going]
//
// - Per group of rows (--by COLUMN; without it, all rows are one group): Scaling ViT's saturating power law
//   y = a·(x + d)^(−b) + c, its parameters with standard errors and --level intervals (those of a and d on the
//   log scale: they are positive and known in ratio).
// - Across all rows: the lower envelope (for each x, the best y of any run with x at or below it: the
//   compute-optimal run there) and ConvNets-match-ViTs' line ln y = alpha + beta·ln x through its points.
// The input is the CSV that scripts/sweep.py collect writes (or any CSV with a header line: --x and --y name
// numeric columns, x > 0). The curves CSV has one row per point: group,kind,x,y,lower,upper,standard_error with
// kind = point (the data), fit (a group's law on a log grid of x from min/extend to max·extend), frontier (the
// envelope's runs) or envelope_fit (the log-log line on the same grid); --params writes one row per parameter.
#include <vitscale/explore/scaling_law.hpp>

#include "tool_runtime.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

namespace vs = vitscale;
namespace ex = vitscale::explore;

namespace {

// One line of a CSV file: comma-separated fields, a field in double quotes may hold commas and "" for a quote.
std::vector<std::string> split_csv_line(const std::string& line, const std::string& file, long line_number) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char ch = line[i];
    if (quoted) {
      if (ch == '"' && i + 1 < line.size() && line[i + 1] == '"') fields.back() += '"', ++i;
      else if (ch == '"') quoted = false;
      else fields.back() += ch;
    } else if (ch == '"') {
      quoted = true;
    } else if (ch == ',') {
      fields.emplace_back();
    } else if (ch != '\r') {
      fields.back() += ch;
    }
  }
  if (quoted) vs::detail::fail(file, ":", line_number, ": a quoted field is not closed");
  return fields;
}

struct run_row {
  std::string group;
  double x = 0, y = 0;
  long line = 0;
};

struct run_table {
  std::vector<run_row> rows;
  std::vector<std::string> groups;  // in the order of their first row
};

// The rows of `file`: x and y from the named columns, the group from `by` ("" for one group named "all").
run_table read_runs(const std::string& file, const std::string& x_name, const std::string& y_name,
                    const std::string& by) {
  std::ifstream in(file);
  if (!in) vs::detail::fail("cannot read '", file, "'");
  std::string line;
  long line_number = 0;
  std::vector<std::string> header;
  while (header.empty() && std::getline(in, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") != std::string::npos) header = split_csv_line(line, file, line_number);
  }
  if (header.empty()) vs::detail::fail(file, ": empty (expected a header line naming the columns)");
  const auto column = [&](const std::string& name, const char* option) {
    const auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end()) {
      std::string names;
      for (const std::string& h : header) names += (names.empty() ? "" : ", ") + h;
      vs::detail::fail(file, ": no column '", name, "' (", option, "); its columns are: ", names);
    }
    return std::size_t(it - header.begin());
  };
  const std::size_t xi = column(x_name, "--x"), yi = column(y_name, "--y");
  const std::size_t gi = by.empty() ? 0 : column(by, "--by");
  const auto number = [&](const std::vector<std::string>& f, std::size_t i, const std::string& name) {
    const std::string& text = f[i];
    if (text.empty()) vs::detail::fail(file, ":", line_number, ": column '", name, "' is empty");
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(text.c_str(), &end);
    if (end == text.c_str() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
      vs::detail::fail(file, ":", line_number, ": column '", name, "' is '", text, "', not a finite number");
    return v;
  };
  run_table t;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::vector<std::string> f = split_csv_line(line, file, line_number);
    if (f.size() != header.size())
      vs::detail::fail(file, ":", line_number, ": ", f.size(), " fields, but the header has ", header.size());
    run_row r;
    r.line = line_number;
    r.x = number(f, xi, x_name);
    r.y = number(f, yi, y_name);
    if (!(r.x > 0)) vs::detail::fail(file, ":", line_number, ": ", x_name, " must be positive (got ", f[xi], ")");
    r.group = by.empty() ? "all" : f[gi];
    if (std::find(t.groups.begin(), t.groups.end(), r.group) == t.groups.end()) t.groups.push_back(r.group);
    t.rows.push_back(r);
  }
  if (t.rows.empty()) vs::detail::fail(file, ": no rows after the header");
  return t;
}

ex::scaling_variable parse_variable(const std::string& s) {
  if (s == "compute") return ex::scaling_variable::compute;
  if (s == "data") return ex::scaling_variable::data;
  if (s == "model-size") return ex::scaling_variable::model_size;
  vs::detail::fail("--variable '", s, "': expected compute, data or model-size");
}

// n points from lo to hi, evenly spaced in log x.
std::vector<double> log_grid(double lo, double hi, int n) {
  std::vector<double> g;
  for (int i = 0; i < n; ++i) g.push_back(std::exp(std::log(lo) + (std::log(hi) - std::log(lo)) * i / (n - 1)));
  return g;
}

// CSV fields: 17 significant digits are exact for a double; a group name is quoted when it needs it.
std::string field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}
std::string number_text(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

// A library error's message without its "vitscale: " prefix, for a sentence that adds context to it.
std::string reason(const std::exception& e) {
  const std::string w = e.what(), prefix = "vitscale: ";
  return w.compare(0, prefix.size(), prefix) == 0 ? w.substr(prefix.size()) : w;
}

void curve_row(std::ofstream& out, const std::string& group, const char* kind, double x, const ex::prediction& p) {
  out << field(group) << ',' << kind << ',' << number_text(x) << ',' << number_text(p.value) << ','
      << number_text(p.lower) << ',' << number_text(p.upper) << ',' << number_text(p.standard_error) << '\n';
}
void point_row(std::ofstream& out, const std::string& group, const char* kind, double x, double y) {
  out << field(group) << ',' << kind << ',' << number_text(x) << ',' << number_text(y) << ",,,\n";
}

}  // namespace

int main(int argc, char** argv) {
  tool::program prog("scaling_fit", "Fit Scaling ViT's saturating power law per group of runs, and the compute-optimal "
                                    "envelope's log-log line, to a CSV of training runs");
  CLI::App& app = prog.app;
  std::string input, x_name = "compute", y_name = "error", by, variable = "compute", out_path, params_path;
  double level = 0.95, extend = 2.0;
  int points = 64;
  bool keep_going = false, no_envelope = false;
  app.add_option("input", input, "CSV of runs with a header line (scripts/sweep.py collect writes one)")->required();
  app.add_option("--x", x_name, "column of the scaling variable (> 0), e.g. compute, images, params");
  app.add_option("--y", y_name, "column of the fitted quantity, e.g. error or loss");
  app.add_option("--by", by, "fit one law per value of this column (e.g. model); default: all rows together");
  app.add_option("--variable", variable, "what --x measures, for the messages: compute, data or model-size");
  app.add_option("--level", level, "confidence level of the intervals")->check(CLI::Range(0.5, 0.9999));
  app.add_option("--out", out_path, "write the data, fitted curves and intervals to this CSV");
  app.add_option("--params", params_path, "write the fitted parameters with standard errors to this CSV");
  app.add_option("--points", points, "points of each curve on the log grid of x")->check(CLI::Range(2, 100000));
  app.add_option("--extend", extend, "the grid runs from min x / extend to max x * extend")->check(CLI::Range(1.0, 1e6));
  app.add_flag("--keep-going", keep_going, "a group whose law cannot be fitted is reported and left out, "
                                           "instead of stopping the program");
  app.add_flag("--no-envelope", no_envelope, "fit the groups only (no envelope, no log-log line)");
  return prog.run(argc, argv, [&] {
    const ex::scaling_variable var = parse_variable(variable);
    const run_table t = read_runs(input, x_name, y_name, by);
    std::ofstream out, params;
    if (!out_path.empty()) {
      out.open(out_path);
      if (!out) vs::detail::fail("cannot write '", out_path, "' (--out)");
      out << "group,kind,x,y,lower,upper,standard_error\n";
    }
    if (!params_path.empty()) {
      params.open(params_path);
      if (!params) vs::detail::fail("cannot write '", params_path, "' (--params)");
      params << "group,law,parameter,value,standard_error,lower,upper,level,points,dof,rss\n";
    }
    std::printf("%s: %zu runs in %zu group%s (%s); %s against %s, %.0f%% intervals\n", input.c_str(), t.rows.size(),
                t.groups.size(), t.groups.size() == 1 ? "" : "s", by.empty() ? "all rows" : ("by " + by).c_str(),
                y_name.c_str(), x_name.c_str(), 100 * level);
    double x_min = t.rows.front().x, x_max = x_min;
    for (const run_row& r : t.rows) x_min = std::min(x_min, r.x), x_max = std::max(x_max, r.x);
    if (out.is_open())
      for (const run_row& r : t.rows) point_row(out, r.group, "point", r.x, r.y);

    int failed = 0;
    for (const std::string& group : t.groups) {
      std::vector<double> x, y;
      for (const run_row& r : t.rows)
        if (r.group == group) x.push_back(r.x), y.push_back(r.y);
      ex::saturating_power_law_fit fit;
      try {
        fit = ex::fit_saturating_power_law(x, y, var);
      } catch (const vs::error& e) {
        if (!keep_going) vs::detail::fail("group '", group, "': ", reason(e));
        std::printf("\n%s: not fitted: %s\n", group.c_str(), reason(e).c_str());
        ++failed;
        continue;
      }
      const double t_q = ex::student_t_quantile(0.5 + level / 2, fit.dof);
      std::printf("\n%s: %s = a*(%s + d)^(-b) + c, %d points, %d degrees of freedom, rss %.4g, s %.4g%s\n",
                  group.c_str(), y_name.c_str(), x_name.c_str(), fit.points, fit.dof, fit.rss,
                  std::sqrt(fit.residual_variance), fit.identifiable ? "" : " (not identifiable: JᵀJ is singular)");
      const char* names[4] = {"a", "b", "c", "d"};
      const double values[4] = {fit.a, fit.b, fit.c, fit.d};
      for (int i = 0; i < 4; ++i) {
        const double v = values[i], se = fit.standard_errors[std::size_t(i)];
        // a and d are positive scales (a multiplies, d shifts compute by orders of magnitude): their interval is
        // taken on ln a, ln d (se of the log by the delta method, se/v) and mapped back, so that it stays
        // positive and is as wide as the data allow in ratio; b and c get the symmetric one.
        const bool log_scale = (i == 0 || i == 3) && v > 0;
        const double lo = log_scale ? v * std::exp(-t_q * se / v) : v - t_q * se;
        const double hi = log_scale ? v * std::exp(t_q * se / v) : v + t_q * se;
        std::printf("  %s = %-12.6g +- %-11.4g (%.0f%%%s: %.6g .. %.6g)\n", names[i], v, se, 100 * level,
                    log_scale ? ", on the log" : "", lo, hi);
        if (params.is_open())
          params << field(group) << ",saturating," << names[i] << ',' << number_text(v) << ',' << number_text(se)
                 << ',' << number_text(lo) << ',' << number_text(hi) << ',' << level << ',' << fit.points << ','
                 << fit.dof << ',' << number_text(fit.rss) << '\n';
      }
      if (out.is_open())
        for (double g : log_grid(x_min / extend, x_max * extend, points))
          curve_row(out, group, "fit", g, fit.predict(g, level));
    }

    if (!no_envelope) {
      std::vector<ex::scaling_run> runs;
      for (const run_row& r : t.rows) runs.push_back({r.group, r.x, r.y});
      const ex::compute_envelope env = ex::lower_envelope(runs);
      std::printf("\ncompute-optimal envelope: %zu of %zu runs (for each %s, the best %s at or below it)\n",
                  env.frontier.size(), runs.size(), x_name.c_str(), y_name.c_str());
      std::string previous;
      for (const ex::scaling_run& r : env.frontier) {
        if (r.model != previous) std::printf("  from %s = %-11.4g %s", x_name.c_str(), r.compute, r.model.c_str());
        if (r.model != previous && !by.empty()) std::printf(" is compute-optimal");
        if (r.model != previous) std::printf("\n");
        previous = r.model;
        if (out.is_open()) point_row(out, r.model, "frontier", r.compute, r.loss);
      }
      try {
        const ex::loglog_fit line = env.fit();
        const double t_q = ex::student_t_quantile(0.5 + level / 2, line.dof);
        std::printf("  envelope: ln %s = alpha + beta * ln %s, %d points, %d degrees of freedom\n", y_name.c_str(),
                    x_name.c_str(), line.points, line.dof);
        std::printf("  alpha = %-12.6g +- %-11.4g (%.0f%%: %.6g .. %.6g)\n", line.alpha, line.se_alpha, 100 * level,
                    line.alpha - t_q * line.se_alpha, line.alpha + t_q * line.se_alpha);
        std::printf("  beta = %-12.6g +- %-11.4g (%.0f%%: %.6g .. %.6g)\n", line.beta, line.se_beta, 100 * level,
                    line.beta - t_q * line.se_beta, line.beta + t_q * line.se_beta);
        if (params.is_open())
          for (const auto& [name, value, se] : {std::make_tuple("alpha", line.alpha, line.se_alpha),
                                                std::make_tuple("beta", line.beta, line.se_beta)})
            params << "envelope,loglog," << name << ',' << number_text(value) << ',' << number_text(se) << ','
                   << number_text(value - t_q * se) << ',' << number_text(value + t_q * se) << ',' << level << ','
                   << line.points << ',' << line.dof << ',' << number_text(line.rss) << '\n';
        if (out.is_open())
          for (double g : log_grid(x_min / extend, x_max * extend, points))
            curve_row(out, "envelope", "envelope_fit", g, line.predict(g, level));
      } catch (const vs::error& e) {
        std::printf("  no log-log line through the envelope: %s\n", reason(e).c_str());
      }
    }
    if (out.is_open()) {
      out.close();
      if (!out) vs::detail::fail("writing '", out_path, "' failed");
      std::printf("\ncurves in %s\n", out_path.c_str());
    }
    if (params.is_open()) {
      params.close();
      if (!params) vs::detail::fail("writing '", params_path, "' failed");
      std::printf("parameters in %s\n", params_path.c_str());
    }
    if (failed > 0) std::printf("%d group%s not fitted (--keep-going)\n", failed, failed == 1 ? "" : "s");
    return 0;
  });
}
