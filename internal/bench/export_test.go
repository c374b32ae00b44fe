package bench

// HeadOf is headOf, for the tests.
var HeadOf = headOf

// ReadHead is readHead, for the tests.
var ReadHead = readHead
