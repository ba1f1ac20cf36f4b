#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "base/error.h"
#include "temp_dir.h"
#include "track/tensorboard.h"

namespace cotune::track {
namespace {

// Known CRC32C values: the classic check string and the test patterns of RFC 3720 (iSCSI), B.4.
TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(""), 0x00000000u);
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string ascending, descending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i)), descending.push_back(static_cast<char>(31 - i));
  EXPECT_EQ(crc32c(ascending), 0x46DD794Eu);
  EXPECT_EQ(crc32c(descending), 0x113FDB5Cu);
}

TEST(Crc32c, MaskIsRotatePlusConstant) {
  const uint32_t crc = crc32c("123456789");
  const uint32_t expected = ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
  EXPECT_EQ(masked_crc32c("123456789", 9), expected);
  // Zero data: the CRC of 8 zero bytes, masked. Value from TensorFlow's framing of an empty length field.
  const std::string zeros(8, '\0');
  const uint32_t c0 = crc32c(zeros);
  EXPECT_EQ(masked_crc32c(zeros.data(), 8), ((c0 >> 15) | (c0 << 17)) + 0xa282ead8u);
}

TEST(TfRecord, FrameLayout) {
  const std::string data = "hello";
  const std::string rec = tfrecord_frame(data);
  ASSERT_EQ(rec.size(), 8u + 4u + data.size() + 4u);
  EXPECT_EQ(static_cast<unsigned char>(rec[0]), 5u);  // little-endian length
  for (int i = 1; i < 8; ++i) EXPECT_EQ(rec[i], '\0');
  uint32_t len_crc = 0, data_crc = 0;
  for (int i = 0; i < 4; ++i) {
    len_crc |= static_cast<uint32_t>(static_cast<unsigned char>(rec[8 + i])) << (8 * i);
    data_crc |= static_cast<uint32_t>(static_cast<unsigned char>(rec[12 + data.size() + i])) << (8 * i);
  }
  EXPECT_EQ(len_crc, masked_crc32c(rec.data(), 8));
  EXPECT_EQ(data_crc, masked_crc32c(data.data(), data.size()));
  EXPECT_EQ(rec.substr(12, data.size()), data);
}

void write_bytes(const std::filesystem::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary) << s;
}

TEST(TfRecord, ReadBackAndDetectDamage) {
  testing::TempDir dir;
  const auto p = dir.path() / "r.tfrecord";
  const std::string file = tfrecord_frame("first") + tfrecord_frame("") + tfrecord_frame(std::string(300, 'x'));
  write_bytes(p, file);
  auto recs = read_tfrecords(p);
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0], "first");
  EXPECT_EQ(recs[1], "");
  EXPECT_EQ(recs[2], std::string(300, 'x'));

  // A flipped data byte fails the data CRC.
  std::string bad = file;
  bad[13] ^= 0x01;
  write_bytes(p, bad);
  EXPECT_THROW(read_tfrecords(p), Error);

  // A flipped length byte fails the length CRC.
  bad = file;
  bad[0] ^= 0x01;
  write_bytes(p, bad);
  EXPECT_THROW(read_tfrecords(p), Error);

  // A torn tail (killed writer) is tolerated on request, an error otherwise.
  write_bytes(p, file.substr(0, file.size() - 7));
  EXPECT_EQ(read_tfrecords(p, /*allow_torn_tail=*/true).size(), 2u);
  EXPECT_THROW(read_tfrecords(p, /*allow_torn_tail=*/false), Error);
}

}  // namespace
}  // namespace cotune::track
