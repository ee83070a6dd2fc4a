// Writes the JPEG seeds of fuzz_image (tests/fuzz/corpus/image/*.jpg) with stb_image_write, which Python's
// standard library cannot do (make_seeds.py writes the PNG seeds). Build and run from the repository root:
//   c++ -std=c++17 tests/fuzz/make_jpeg_seeds.cpp -I/usr/include/stb -lstb -o /tmp/make_jpeg_seeds
//   /tmp/make_jpeg_seeds tests/fuzz/corpus/image
// Each file is well under 20 kB. Baseline JPEGs only (stb_image_write writes no progressive ones); quality
// <= 90 gives 4:2:0 chroma subsampling, above it 4:4:4.
#include <stb_image_write.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  auto pattern = [](int w, int h, int c) {
    std::vector<unsigned char> p(std::size_t(w) * h * c);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int k = 0; k < c; ++k)
          p[(std::size_t(y) * w + x) * c + k] =
              static_cast<unsigned char>(128 + 100 * std::sin(0.3 * x + 0.7 * y + 2.0 * k));
    return p;
  };
  struct seed {
    const char* name;
    int w, h, c, quality;
  } seeds[] = {{"grey_8x8.jpg", 8, 8, 1, 90}, {"rgb_16x16_444.jpg", 16, 16, 3, 95},
               {"rgb_17x9_420.jpg", 17, 9, 3, 50}, {"rgb_1x1.jpg", 1, 1, 3, 75}, {"grey_33x20.jpg", 33, 20, 1, 30}};
  for (const seed& s : seeds) {
    const auto p = pattern(s.w, s.h, s.c);
    if (!stbi_write_jpg((dir + "/" + s.name).c_str(), s.w, s.h, s.c, p.data(), s.quality)) {
      std::fprintf(stderr, "cannot write %s/%s\n", dir.c_str(), s.name);
      return 1;
    }
  }
  return 0;
}
