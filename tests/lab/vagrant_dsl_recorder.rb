# A small recording stand-in for the Vagrant DSL: evaluates a Vagrantfile without Vagrant and prints
# what it configured as JSON (machines, boxes, networks, providers, provisioners, synced folders).
# Debian's vagrant lacks the winrm gem, so `vagrant validate` cannot load a Windows Vagrantfile here.
require "json"

class Recorder
  attr_reader :calls
  def initialize(path = [])
    @path = path
    @calls = {}
    @children = {}
  end

  def method_missing(name, *args, **kwargs, &block)
    key = name.to_s
    if key.end_with?("=")
      @calls[key.chomp("=")] = args.first
      return args.first
    end
    if args.empty? && kwargs.empty? && block.nil?
      return (@children[key] ||= Recorder.new(@path + [key]))
    end
    (@calls[key] ||= []) << { "args" => args.map { |a| a.is_a?(Symbol) ? a.to_s : a }, "kwargs" => stringify(kwargs) }
    if block
      child = Recorder.new(@path + [key] + args.map(&:to_s))
      block.call(child)
      @calls[key].last["block"] = child.to_h
    end
    nil
  end

  def respond_to_missing?(*) = true

  def stringify(obj)
    case obj
    when Hash then obj.to_h { |k, v| [k.to_s, stringify(v)] }
    when Symbol then obj.to_s
    when Array then obj.map { |v| stringify(v) }
    else obj
    end
  end

  def to_h
    h = @calls.transform_values { |v| stringify(v) }
    @children.each { |k, c| h[k] = c.to_h }
    h
  end
end

module Vagrant
  @recorded = nil
  class << self
    attr_accessor :recorded
    def require_version(*) = nil
    def configure(version)
      root = Recorder.new
      yield root
      (self.recorded ||= {})[version] = root.to_h
    end
  end
end

load ARGV.fetch(0)
puts JSON.pretty_generate(Vagrant.recorded)
