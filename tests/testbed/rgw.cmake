# CTest fixture "rgw": a throwaway Ceph RGW for the tests that need real S3.
#   rgw_up   (FIXTURES_SETUP rgw)   tests/testbed/rgw-up.sh   <build>/rgw 0
#   rgw_down (FIXTURES_CLEANUP rgw) tests/testbed/rgw-down.sh <build>/rgw
# A test that needs it:
#   set_tests_properties(T PROPERTIES FIXTURES_REQUIRED rgw
#                        ENVIRONMENT "SCRIBEFS_TEST_S3_ENV=${SCRIBEFS_RGW_ENV}")
# and reads S3_ENDPOINT, S3_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
# from that file. If RGW cannot start, rgw_up fails and CTest reports the
# dependent tests as failed (not run). Include this file from any tests/ folder;
# the fixture is defined once.
get_property(_scribefs_rgw_defined GLOBAL PROPERTY SCRIBEFS_RGW_FIXTURE_DEFINED)
set(SCRIBEFS_RGW_DIR ${CMAKE_BINARY_DIR}/rgw)
set(SCRIBEFS_RGW_ENV ${SCRIBEFS_RGW_DIR}/env)
if(NOT _scribefs_rgw_defined)
  set_property(GLOBAL PROPERTY SCRIBEFS_RGW_FIXTURE_DEFINED TRUE)
  add_test(NAME rgw_up
    COMMAND ${PROJECT_SOURCE_DIR}/tests/testbed/rgw-up.sh ${SCRIBEFS_RGW_DIR} 0)
  set_tests_properties(rgw_up PROPERTIES FIXTURES_SETUP rgw TIMEOUT 240)
  add_test(NAME rgw_down
    COMMAND ${PROJECT_SOURCE_DIR}/tests/testbed/rgw-down.sh ${SCRIBEFS_RGW_DIR})
  set_tests_properties(rgw_down PROPERTIES FIXTURES_CLEANUP rgw TIMEOUT 60)
endif()
