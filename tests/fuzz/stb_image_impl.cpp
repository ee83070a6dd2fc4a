// stb_image's implementation for fuzz_image, in a translation unit of its own so that it can be compiled with
// its own sanitizer options (tests/fuzz/CMakeLists.txt): AddressSanitizer and UBSan as every target, except
// UBSan's checks of shifts and of signed overflow, stb_image's own arithmetic on corrupt data. stb_image 2.27's
// JPEG bit reader shifts by a negative or too large count on corrupt entropy-coded data
// (stbi__grow_buffer_unsafe: `b << (24 - code_bits)` once code_bits has gone negative;
// regressions/image/jpeg_bit_reader_shift_33.jpg). That only puts wrong bits into a code buffer whose every use
// is masked: the image decodes to garbage, as corrupt data may, and it cannot be checked before decoding. Signed
// overflow is left out too, as a precaution of the same kind (none has been seen here): stb's integer
// arithmetic on corrupt coefficients (dequantisation, the IDCT) is where it would occur, and it too would only
// make wrong pixels. Any memory error either led to would still be reported by AddressSanitizer, which stays on
// here, as do UBSan's other checks.
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
