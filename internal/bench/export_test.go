package bench

// HeadOf is headOf, for the tests.
var HeadOf = headOf
