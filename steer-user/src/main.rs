fn main() {
    println!("{}", steer::objects::STEER.len());
}
