#pragma once
// Scaling-law fits: how error or loss falls with compute, data or model size, with standard errors and
// confidence intervals, for planning runs from the seed papers' curves.
//
// - Scaling ViT (Zhai et al. 2022, arXiv:2106.04560, Eq. 1 and Figure 2): a saturating power law
//       E(x) = a·(x + d)^(−b) + c,
//   with x the training compute (the paper's TPUv3 core-days), the images seen, or the model size: one fit
//   (fit_saturating_power_law), named by `scaling_variable`. c is the irreducible error, d shifts the curve
//   where x is small, b is the exponent. Non-linear least squares on E (every point weighted alike), through
//   Eigen's Levenberg–Marquardt (unsupported/Eigen/NonLinearOptimization, a port of MINPACK's lmder — the
//   routine under scipy.optimize.curve_fit's default method).
// - ConvNets match ViTs at scale (Smith et al. 2023, arXiv:2310.16764, Figure 2): held-out loss against
//   compute on log-log axes, ln L = α + β·ln C (ordinary least squares; β, the exponent, is the same in any
//   base), fitted through the compute-optimal envelope of many (model, compute, loss) runs: for each compute
//   the best loss reached at or below it (compute_envelope), which also names the compute-optimal model.
//
// Uncertainty, for both fits: covariance of the parameters s²·(JᵀJ)⁻¹ at the optimum, s² = RSS/(n − p)
// (curve_fit's pcov with absolute_sigma=False); a confidence interval for the mean prediction at x by the
// delta method, ± t·sqrt(gᵀ·cov·g), g the gradient of the prediction in the parameters and t Student's
// quantile with n − p degrees of freedom (exact for the linear fit under Gaussian noise, the usual
// approximation for the non-linear one). Not a prediction interval for a new observation.
//
// Bad input (too few points, x ≤ 0, a non-finite value) and a fit that does not converge raise
// vitscale::error, as everywhere in the library.

#include <vitscale/core/eigen.hpp>
#include <vitscale/core/error.hpp>

// Eigen's SVD and its MINPACK port after core/eigen.hpp, under the same suppression of GCC 12's false
// "maybe uninitialised" report (the module's own code, instantiated here at -O3, is then covered too). Neither
// module warns under the library's -Wall -Wextra -Wpedantic -Wshadow, whether Eigen is a system include or not.
VITSCALE_EIGEN_BEGIN
#include <Eigen/SVD>
#include <unsupported/Eigen/NonLinearOptimization>
VITSCALE_EIGEN_END

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <vector>

namespace vitscale {
namespace explore {

// What the x of a saturating power law measures; only names it in messages (Zhai et al. fit all three).
enum class scaling_variable { compute, data, model_size };

inline const char* name_of(scaling_variable v) {
  switch (v) {
    case scaling_variable::compute: return "compute";
    case scaling_variable::data: return "data size";
    case scaling_variable::model_size: return "model size";
  }
  return "?";
}

// A fitted value with a confidence interval of the mean at `level`.
struct prediction {
  double value = 0;
  double lower = 0;
  double upper = 0;
  double standard_error = 0;  // of the value (of ln L for the log-log fit, whose interval is exp of ln L's)
  double level = 0;
};

// Student's t quantile: t with P(T ≤ t) = p, T with `dof` degrees of freedom, p in (0, 1). The two-sided
// tail probability of an integer dof has a closed finite sum (Abramowitz & Stegun 26.7.3–4); bisection on it.
inline double student_t_quantile(double p, int dof) {
  if (!(p > 0 && p < 1)) vitscale::detail::fail("student_t_quantile: p must lie in (0, 1) (got ", p, ")");
  if (dof < 1) vitscale::detail::fail("student_t_quantile: degrees of freedom must be at least 1 (got ", dof, ")");
  if (p < 0.5) return -student_t_quantile(1 - p, dof);
  const double pi = 3.14159265358979323846;
  // A(t) = P(|T| ≤ t).
  const auto central = [dof, pi](double t) {
    const double theta = std::atan(t / std::sqrt(double(dof)));
    const double s = std::sin(theta), c = std::cos(theta);
    if (dof % 2 == 0) {
      double term = 1, sum = 1;
      for (int k = 1; 2 * k <= dof - 2; ++k) sum += term *= c * c * (2 * k - 1) / (2 * k);
      return s * sum;
    }
    if (dof == 1) return 2 * theta / pi;
    double term = c, sum = c;
    for (int k = 1; 2 * k + 1 <= dof - 2; ++k) sum += term *= c * c * (2 * k) / (2 * k + 1);
    return 2 / pi * (theta + s * sum);
  };
  const double target = 2 * p - 1;
  double lo = 0, hi = 1;
  while (central(hi) < target && hi < 1e300) hi *= 2;
  for (int i = 0; i < 2000 && hi - lo > 4 * std::numeric_limits<double>::epsilon() * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    (central(mid) < target ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

// ---------------------------------------------------------------------------------------------------------
// Saturating power law (Zhai et al. 2022, Eq. 1)

struct power_law_options {
  double tolerance = 1e-12;   // MINPACK's ftol and xtol, per start
  int max_evaluations = 2000;  // residual evaluations per start
};

// E(x) = a·(x + d)^(−b) + c, in the caller's units of x.
struct saturating_power_law_fit {
  scaling_variable variable = scaling_variable::compute;
  double a = 0, b = 0, c = 0, d = 0;
  Eigen::Matrix4d covariance = Eigen::Matrix4d::Zero();  // of (a, b, c, d)
  std::array<double, 4> standard_errors{};                // sqrt of its diagonal
  bool identifiable = true;  // false: JᵀJ is singular at the optimum; covariance and intervals are infinite
  int points = 0;
  int dof = 0;  // points − 4
  double rss = 0;
  double residual_variance = 0;  // s² = rss / dof
  int evaluations = 0;           // residual evaluations of the winning start
  int start = -1;                // which start of the multi-start won (see fit_saturating_power_law)

  // The fit works in u = x / scale (scale: the geometric mean of the points' x), on (a·scale^(−b), b, c,
  // d / scale); predictions use that parametrisation's covariance, which the one above is a transform of.
  double scale = 1;
  Eigen::Matrix4d scaled_covariance = Eigen::Matrix4d::Zero();

  double operator()(double x) const { return a * std::pow(x + d, -b) + c; }

  // The value at x with a `level` confidence interval of the mean (delta method, Student's t, dof above).
  prediction predict(double x, double level = 0.95) const {
    if (!(std::isfinite(x) && x > 0))
      vitscale::detail::fail("saturating_power_law_fit::predict: ", name_of(variable),
                             " must be positive and finite (got ", x, ")");
    if (!(level > 0 && level < 1))
      vitscale::detail::fail("saturating_power_law_fit::predict: level must lie in (0, 1) (got ", level, ")");
    const double u = x / scale, a_s = a * std::pow(scale, -b), d_s = d / scale;
    const double g = std::pow(u + d_s, -b);
    const Eigen::Vector4d grad(g, -a_s * g * std::log(u + d_s), 1.0, -b * a_s * g / (u + d_s));
    prediction r;
    r.level = level;
    r.value = a_s * g + c;
    r.standard_error = identifiable ? std::sqrt(std::max(0.0, grad.dot(scaled_covariance * grad)))
                                    : std::numeric_limits<double>::infinity();
    const double half = student_t_quantile(0.5 + level / 2, dof) * r.standard_error;
    r.lower = r.value - half;
    r.upper = r.value + half;
    return r;
  }
};

namespace detail {

// Residuals f(u) − y and their Jacobian in the optimiser's parameters θ = (ln a_s, ln b, c, δ), d_s = δ²:
// a and b stay positive, d non-negative and reachable at 0 (at δ = 0 the δ column vanishes, which LM's
// damping handles), c is left free.
struct power_law_residuals {
  const Eigen::VectorXd& u;
  const Eigen::VectorXd& y;
  int inputs() const { return 4; }
  int values() const { return int(u.size()); }
  int operator()(const Eigen::VectorXd& t, Eigen::VectorXd& f) const {
    const double a_s = std::exp(t[0]), b = std::exp(t[1]), d_s = t[3] * t[3];
    f = (a_s * ((u.array() + d_s).pow(-b)) + t[2] - y.array()).matrix();
    return f.allFinite() ? 0 : -1;  // stops this start (UserAsked) rather than feed LM infinities
  }
  int df(const Eigen::VectorXd& t, Eigen::MatrixXd& J) const {
    const double a_s = std::exp(t[0]), b = std::exp(t[1]), d_s = t[3] * t[3];
    const Eigen::ArrayXd v = u.array() + d_s, g = v.pow(-b);
    J.col(0) = (a_s * g).matrix();
    J.col(1) = (-b * a_s * g * v.log()).matrix();
    J.col(2).setOnes();
    J.col(3) = (-2 * t[3] * b * a_s * g / v).matrix();
    return J.allFinite() ? 0 : -1;
  }
};

inline void check_points(const char* who, const std::vector<double>& x, const std::vector<double>& y,
                         const char* x_name, bool y_positive) {
  if (x.size() != y.size())
    vitscale::detail::fail(who, ": ", x.size(), " values of ", x_name, " but ", y.size(), " of the fitted quantity");
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!(std::isfinite(x[i]) && x[i] > 0))
      vitscale::detail::fail(who, ": ", x_name, " must be positive and finite (point ", i, " has ", x[i], ")");
    if (!std::isfinite(y[i]) || (y_positive && !(y[i] > 0)))
      vitscale::detail::fail(who, ": the fitted quantity must be ", y_positive ? "positive and " : "", "finite (point ",
                             i, " has ", y[i], ")");
  }
}

inline std::size_t distinct_count(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  return std::size_t(std::unique(x.begin(), x.end()) - x.begin());
}

}  // namespace detail

// Least-squares fit of E = a·(x + d)^(−b) + c to the points (x_i, E_i); x > 0, at least 5 points with 4 distinct
// x (n − 4 ≥ 1 degrees of freedom for s²). Multi-start, deterministic: b₀ ∈ {0.1, 0.3, 1, 3} × d₀ ∈ {0, 0.1, 1,
// 10}·min x; for each, a and c start at their linear least-squares values given b₀ and d₀ (starts with a ≤ 0 are
// skipped), LM runs, and the converged start with the smallest RSS wins (the first on a tie; `start` = 4·(b index)
// + d index). Every point is weighted alike (no per-point sigma).
inline saturating_power_law_fit fit_saturating_power_law(const std::vector<double>& x, const std::vector<double>& y,
                                                         scaling_variable variable = scaling_variable::compute,
                                                         const power_law_options& options = {}) {
  const char* who = "fit_saturating_power_law";
  detail::check_points(who, x, y, name_of(variable), false);
  if (x.size() < 5 || detail::distinct_count(x) < 4)
    vitscale::detail::fail(who, ": needs at least 5 points and 4 distinct values of ", name_of(variable),
                           " for 4 parameters and their standard errors (got ", x.size(), " points, ",
                           detail::distinct_count(x), " distinct)");
  if (!(options.tolerance > 0) || options.max_evaluations < 1)
    vitscale::detail::fail(who, ": tolerance and max_evaluations must be positive");
  const Eigen::Index n = Eigen::Index(x.size());
  const Eigen::VectorXd X = Eigen::Map<const Eigen::VectorXd>(x.data(), n);
  const Eigen::VectorXd Y = Eigen::Map<const Eigen::VectorXd>(y.data(), n);
  const double scale = std::exp(X.array().log().mean());
  const Eigen::VectorXd u = X / scale;
  const double u_min = u.minCoeff();

  detail::power_law_residuals residuals{u, Y};
  saturating_power_law_fit best;
  Eigen::VectorXd best_theta;
  best.rss = std::numeric_limits<double>::infinity();
  const double b_starts[] = {0.1, 0.3, 1.0, 3.0}, d_starts[] = {0.0, 0.1, 1.0, 10.0};
  int tried = 0, last_status = 0;
  for (int ib = 0; ib < 4; ++ib) {
    for (int id = 0; id < 4; ++id) {
      const double b0 = b_starts[ib], d0 = d_starts[id] * u_min;
      const Eigen::ArrayXd g = (u.array() + d0).pow(-b0);
      const double g_mean = g.mean(), y_mean = Y.mean();
      const double sxx = (g - g_mean).square().sum();
      const double a0 = sxx > 0 ? ((g - g_mean) * (Y.array() - y_mean)).sum() / sxx : 0.0;
      if (!(a0 > 0) || !std::isfinite(a0)) continue;
      Eigen::VectorXd theta(4);
      theta << std::log(a0), std::log(b0), y_mean - a0 * g_mean, std::sqrt(d0);
      Eigen::LevenbergMarquardt<detail::power_law_residuals> lm(residuals);
      lm.parameters.ftol = lm.parameters.xtol = options.tolerance;
      lm.parameters.maxfev = options.max_evaluations;
      const Eigen::LevenbergMarquardtSpace::Status status = lm.minimize(theta);
      ++tried;
      last_status = int(status);
      // 1–4: MINPACK's convergence tests met; 6–8: the tolerances are below what the arithmetic can improve.
      const bool converged = (status >= 1 && status <= 4) || (status >= 6 && status <= 8);
      Eigen::VectorXd f(n);
      if (!converged || residuals(theta, f) != 0) continue;
      const double rss = f.squaredNorm();
      if (rss < best.rss) {
        best.rss = rss;
        best.evaluations = int(lm.nfev);
        best.start = 4 * ib + id;
        best_theta = theta;
      }
    }
  }
  if (tried == 0)
    vitscale::detail::fail(who, ": no start gives a decreasing curve (a > 0 in the linear fit of a and c for every ",
                           "start b, d); is the error falling with ", name_of(variable), "?");
  if (best.start < 0)
    vitscale::detail::fail(who, ": no start converged (", tried, " tried, last Levenberg–Marquardt status ",
                           last_status, "; 5: max_evaluations reached, 9: a non-finite residual)");

  const double a_s = std::exp(best_theta[0]), b = std::exp(best_theta[1]), c = best_theta[2];
  const double d_s = best_theta[3] * best_theta[3];
  best.variable = variable;
  best.a = a_s * std::pow(scale, b);
  best.b = b;
  best.c = c;
  best.d = d_s * scale;
  best.scale = scale;
  best.points = int(n);
  best.dof = int(n) - 4;
  best.residual_variance = best.rss / best.dof;

  // Covariance in (a_s, b, c, d_s) from the Jacobian in those parameters, through an SVD of its column-scaled
  // form (the scaling keeps the condition number about correlations, not units); then the linear transform to
  // (a, b, c, d): a = a_s·scale^b, d = d_s·scale.
  const Eigen::ArrayXd v = u.array() + d_s, g = v.pow(-b);
  Eigen::MatrixXd J(n, 4);
  J.col(0) = g.matrix();
  J.col(1) = (-a_s * g * v.log()).matrix();
  J.col(2).setOnes();
  J.col(3) = (-b * a_s * g / v).matrix();
  const Eigen::Vector4d norms = J.colwise().norm().transpose();
  const Eigen::MatrixXd Js = J * norms.cwiseInverse().asDiagonal();
  const Eigen::JacobiSVD<Eigen::MatrixXd> svd(Js, Eigen::ComputeThinV);
  const Eigen::Vector4d sv = svd.singularValues();
  best.identifiable = (norms.array() > 0).all() && sv[3] > std::numeric_limits<double>::epsilon() * double(n) * sv[0];
  if (best.identifiable) {
    const Eigen::Matrix4d V = svd.matrixV();
    const Eigen::Matrix4d inner = V * sv.array().square().inverse().matrix().asDiagonal() * V.transpose();
    best.scaled_covariance = best.residual_variance * norms.cwiseInverse().asDiagonal() * inner *
                             norms.cwiseInverse().asDiagonal();
    Eigen::Matrix4d T = Eigen::Matrix4d::Zero();
    T(0, 0) = std::pow(scale, b);
    T(0, 1) = best.a * std::log(scale);
    T(1, 1) = T(2, 2) = 1;
    T(3, 3) = scale;
    best.covariance = T * best.scaled_covariance * T.transpose();
  } else {
    best.scaled_covariance.setConstant(std::numeric_limits<double>::infinity());
    best.covariance.setConstant(std::numeric_limits<double>::infinity());
  }
  for (int i = 0; i < 4; ++i) best.standard_errors[std::size_t(i)] = std::sqrt(best.covariance(i, i));
  return best;
}

// Zhai et al.'s three forms of Eq. 1: error against compute, against images seen, against model size.
inline saturating_power_law_fit fit_error_vs_compute(const std::vector<double>& compute,
                                                     const std::vector<double>& error,
                                                     const power_law_options& options = {}) {
  return fit_saturating_power_law(compute, error, scaling_variable::compute, options);
}
inline saturating_power_law_fit fit_error_vs_data(const std::vector<double>& data, const std::vector<double>& error,
                                                  const power_law_options& options = {}) {
  return fit_saturating_power_law(data, error, scaling_variable::data, options);
}
inline saturating_power_law_fit fit_error_vs_model_size(const std::vector<double>& size,
                                                        const std::vector<double>& error,
                                                        const power_law_options& options = {}) {
  return fit_saturating_power_law(size, error, scaling_variable::model_size, options);
}

// ---------------------------------------------------------------------------------------------------------
// Log-log line (Smith et al. 2023) and the compute-optimal envelope

// ln L = alpha + beta·ln C, i.e. L = e^alpha · C^beta.
struct loglog_fit {
  double alpha = 0, beta = 0;
  Eigen::Matrix2d covariance = Eigen::Matrix2d::Zero();  // of (alpha, beta)
  double se_alpha = 0, se_beta = 0;
  int points = 0;
  int dof = 0;                   // points − 2
  double rss = 0;                // of ln L
  double residual_variance = 0;  // s² = rss / dof
  double mean_log_x = 0;         // x̄ of ln C, and Σ(ln C − x̄)²: the interval's stable form
  double sxx = 0;

  double operator()(double x) const { return std::exp(alpha + beta * std::log(x)); }

  // L at x with a `level` interval: that of the mean of ln L (Student's t, dof above), mapped through exp.
  prediction predict(double x, double level = 0.95) const {
    if (!(std::isfinite(x) && x > 0))
      vitscale::detail::fail("loglog_fit::predict: compute must be positive and finite (got ", x, ")");
    if (!(level > 0 && level < 1))
      vitscale::detail::fail("loglog_fit::predict: level must lie in (0, 1) (got ", level, ")");
    const double lx = std::log(x), mean = alpha + beta * lx;
    prediction r;
    r.level = level;
    r.value = std::exp(mean);
    r.standard_error = std::sqrt(residual_variance * (1.0 / points + (lx - mean_log_x) * (lx - mean_log_x) / sxx));
    const double half = student_t_quantile(0.5 + level / 2, dof) * r.standard_error;
    r.lower = std::exp(mean - half);
    r.upper = std::exp(mean + half);
    return r;
  }
};

// Ordinary least squares of ln y on ln x (closed form, centred sums); x, y > 0, at least 3 points, 2 distinct x.
inline loglog_fit fit_loglog(const std::vector<double>& x, const std::vector<double>& y) {
  detail::check_points("fit_loglog", x, y, "compute", true);
  if (x.size() < 3 || detail::distinct_count(x) < 2)
    vitscale::detail::fail("fit_loglog: needs at least 3 points and 2 distinct values of compute for a line and its ",
                           "standard errors (got ", x.size(), " points, ", detail::distinct_count(x), " distinct)");
  const Eigen::Index n = Eigen::Index(x.size());
  const Eigen::ArrayXd lx = Eigen::Map<const Eigen::ArrayXd>(x.data(), n).log();
  const Eigen::ArrayXd ly = Eigen::Map<const Eigen::ArrayXd>(y.data(), n).log();
  loglog_fit r;
  r.points = int(n);
  r.dof = int(n) - 2;
  r.mean_log_x = lx.mean();
  const double mean_y = ly.mean();
  const Eigen::ArrayXd cx = lx - r.mean_log_x;
  r.sxx = cx.square().sum();
  r.beta = (cx * (ly - mean_y)).sum() / r.sxx;
  r.alpha = mean_y - r.beta * r.mean_log_x;
  r.rss = (ly - r.alpha - r.beta * lx).square().sum();
  r.residual_variance = r.rss / r.dof;
  const double s2 = r.residual_variance;
  r.covariance << s2 * (1.0 / double(n) + r.mean_log_x * r.mean_log_x / r.sxx), -s2 * r.mean_log_x / r.sxx,
      -s2 * r.mean_log_x / r.sxx, s2 / r.sxx;
  r.se_alpha = std::sqrt(r.covariance(0, 0));
  r.se_beta = std::sqrt(r.covariance(1, 1));
  return r;
}

// One training run: a model trained with a compute budget, and the loss (or error) it reached.
struct scaling_run {
  std::string model;
  double compute = 0;
  double loss = 0;
};

// The lower envelope of runs: for each compute C the best loss of any run with compute ≤ C. A step function
// whose steps are `frontier`, ascending in compute and strictly descending in loss.
struct compute_envelope {
  std::vector<scaling_run> frontier;
  std::vector<std::size_t> indices;  // of the frontier runs in the input

  // The run that sets the envelope at `compute` (the compute-optimal one there); an error below the first run.
  const scaling_run& optimal_at(double compute) const {
    if (frontier.empty() || !(compute >= frontier.front().compute))
      vitscale::detail::fail("compute_envelope::optimal_at: no run has compute at or below ", compute,
                             frontier.empty() ? " (no runs)" : "");
    const auto after = std::upper_bound(frontier.begin(), frontier.end(), compute,
                                        [](double c, const scaling_run& r) { return c < r.compute; });
    return *(after - 1);
  }
  double loss_at(double compute) const { return optimal_at(compute).loss; }

  // Smith et al.'s line through the envelope's points.
  loglog_fit fit() const {
    std::vector<double> x, y;
    for (const scaling_run& r : frontier) x.push_back(r.compute), y.push_back(r.loss);
    return fit_loglog(x, y);
  }
};

// The envelope of `runs` (compute > 0, loss finite). Ties: of runs with equal compute only the lowest loss can be
// on it; a run matching, not beating, the best loss of less compute is not (the first in input order wins).
inline compute_envelope lower_envelope(const std::vector<scaling_run>& runs) {
  if (runs.empty()) vitscale::detail::fail("lower_envelope: no runs");
  std::vector<std::size_t> order(runs.size());
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const scaling_run& r = runs[i];
    if (!(std::isfinite(r.compute) && r.compute > 0) || !std::isfinite(r.loss))
      vitscale::detail::fail("lower_envelope: run ", i, " (", r.model, ") needs positive finite compute and a finite ",
                             "loss (got ", r.compute, ", ", r.loss, ")");
    order[i] = i;
  }
  std::stable_sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) {
    return runs[i].compute < runs[j].compute || (runs[i].compute == runs[j].compute && runs[i].loss < runs[j].loss);
  });
  compute_envelope e;
  for (std::size_t i : order) {
    if (!e.frontier.empty() && !(runs[i].loss < e.frontier.back().loss)) continue;
    e.frontier.push_back(runs[i]);
    e.indices.push_back(i);
  }
  return e;
}

}  // namespace explore
}  // namespace vitscale
